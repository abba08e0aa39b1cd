# For tests only: a session image whose agent never answers, so a create stays in `creating`
# until the agent timeout. Lets tests kill the control plane mid-create deterministically.
FROM berth/tiny:latest
ENTRYPOINT ["/bin/sleep", "3600"]
