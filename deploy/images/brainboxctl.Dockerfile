# brainboxctl: the operator CLI and the injection webhook, one static (musl) binary and nothing
# else. Built by scripts/images.sh.
FROM scratch
LABEL org.opencontainers.image.title="brainboxctl" \
      org.opencontainers.image.source="https://example.invalid/brainbox-guard"
COPY brainboxctl /brainboxctl
USER 65532:65532
ENTRYPOINT ["/brainboxctl"]
