# Runs inside a fresh container of the image the judge built (in its WORKDIR), after the
# judge planted .git/, __pycache__/ and venv/ into the build context next to your .env.
# None of them may be in the image.
leaked=""
for item in .env .git/HEAD __pycache__/app.cpython-311.pyc venv/bin/python; do
  where=$(find / -xdev -path "*/$item" 2>/dev/null | head -n 1)
  if [ -n "$where" ]; then
    leaked="$leaked, $item (at $where)"
  fi
done
if [ -n "$leaked" ]; then
  echo "FAIL: leaked into the image: ${leaked#, }. List them in .dockerignore."
  exit 1
fi
echo "nothing leaked: .env, .git, __pycache__ and venv stayed out of the image"
