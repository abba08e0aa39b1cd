# The layer every session image gets on top of its rootfs: the static agent as PID 1.
# The agent starts as root with a short capability allowlist and runs user work as uid 1000.
ARG BASE
FROM ${BASE}
COPY berth-agent /usr/local/bin/berth-agent
ENV HOME=/home/user
WORKDIR /home/user
ENTRYPOINT ["/usr/local/bin/berth-agent"]
