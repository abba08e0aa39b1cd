# Runs inside a fresh container of the image the judge built, in its WORKDIR: the final stage
# must hold the built assets (dist/, with its manifest.json) and not the build's cache.
cache=$(find / -xdev -type d -name .build-cache 2>/dev/null | head -n 1)
if [ -n "$cache" ]; then
  mb=$(( $(du -sk "$cache" | cut -f1) * 1024 / 1000000 ))
  echo "{\"message\": \"the build's cache is in the final image: $cache ($mb MB)\", \"hint\": \"Let only dist/ cross from the build stage into the last one: COPY --from=<build stage> <its dist/> dist/\"}"
  exit 1
fi
manifest=$(find / -xdev -path '*/dist/manifest.json' 2>/dev/null | head -n 1)
if [ -z "$manifest" ]; then
  echo "{\"message\": \"no dist/manifest.json in the final image: the built assets are missing\", \"hint\": \"COPY --from=<build stage> the dist/ folder that build.py made there, next to server.py\"}"
  exit 1
fi
echo "final image: ${manifest%/manifest.json}/ is there, .build-cache/ is not"
