# brainbox-node-agent: one static (musl) binary with its eBPF objects embedded, plus the
# profiles it enforces. Runs as uid 0 with the capabilities the DaemonSet grants (and drops the
# rest itself at start, see docs/hardening.md). Built by scripts/images.sh.
FROM scratch
LABEL org.opencontainers.image.title="brainbox-node-agent" \
      org.opencontainers.image.source="https://example.invalid/brainbox-guard"
COPY brainbox-node-agent /brainbox-node-agent
COPY profiles /etc/brainbox/profiles
ENV BRAINBOX_PROFILES_DIR=/etc/brainbox/profiles
USER 0:0
ENTRYPOINT ["/brainbox-node-agent"]
CMD ["run"]
