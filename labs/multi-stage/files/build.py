"""Builds the site's assets: assets/ in, dist/ out.

    python3 build.py

Like many real asset pipelines (bundlers, image and font tools, compilers), it keeps a large
cache of intermediate results in .build-cache/ (about 125 MB here), so that the next build can
skip work. The server needs none of it: only the small dist/ folder.

Standard library only, and deterministic: the same assets give the same output, byte for byte.
"""

import hashlib
import json
import random
import re
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
SRC = ROOT / "assets"
DIST = ROOT / "dist"
CACHE = ROOT / ".build-cache"

# How much intermediate data the "compiler" leaves behind: 12 files of 10 MiB.
CACHE_FILES = 12
CACHE_FILE_BYTES = 10 * 1024 * 1024


def minify(text: str, kind: str) -> str:
    """A crude minifier: drops comments and the whitespace between lines."""
    if kind in ("css", "js"):
        text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    if kind == "html":
        text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # Text in HTML needs a space where a line ended; a script needs its line breaks.
    return {"html": " ", "css": "", "js": "\n"}.get(kind, "\n").join(lines)


def main() -> int:
    started = time.monotonic()
    sources = sorted(p for p in SRC.iterdir() if p.is_file())
    if not sources:
        print(f"build.py: no assets in {SRC}", file=sys.stderr)
        return 1
    digest = hashlib.sha256()
    for src in sources:
        digest.update(src.name.encode() + b"\0" + src.read_bytes())

    # 1. The intermediate results: large, and of no use once the build is done.
    shutil.rmtree(CACHE, ignore_errors=True)
    CACHE.mkdir()
    rng = random.Random(digest.hexdigest())
    for n in range(CACHE_FILES):
        (CACHE / f"chunk-{n:02d}.o").write_bytes(rng.randbytes(CACHE_FILE_BYTES))
    cache_bytes = sum(p.stat().st_size for p in CACHE.iterdir())

    # 2. The output the server needs: minified assets named by their content's hash.
    shutil.rmtree(DIST, ignore_errors=True)
    DIST.mkdir()
    manifest = {}
    for src in sources:
        kind = src.suffix.lstrip(".")
        body = minify(src.read_text(encoding="utf-8"), kind)
        if src.name == "index.html":
            name = "index.html"  # the entry point keeps its name
        else:
            short = hashlib.sha256(body.encode()).hexdigest()[:10]
            name = f"{src.stem}.{short}{src.suffix}"
        manifest[src.name] = name
        (DIST / name).write_text(body, encoding="utf-8")
    index = DIST / "index.html"
    html = index.read_text(encoding="utf-8")
    for original, built in manifest.items():
        html = html.replace(f'"{original}"', f'"{built}"')
    index.write_text(html, encoding="utf-8")
    (DIST / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    dist_bytes = sum(p.stat().st_size for p in DIST.iterdir())

    took = time.monotonic() - started
    print(f"build.py: {len(sources)} assets -> dist/ ({dist_bytes / 1e3:.1f} kB), "
          f"cache .build-cache/ ({cache_bytes / 1e6:.0f} MB), {took:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
