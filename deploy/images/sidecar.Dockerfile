# brainbox-sidecar: one static (musl) binary and nothing else: no shell, no package manager, no
# libc, no CA bundle (trust comes from the SPIFFE bundle). Built by scripts/images.sh.
FROM scratch
LABEL org.opencontainers.image.title="brainbox-sidecar" \
      org.opencontainers.image.source="https://example.invalid/brainbox-guard"
COPY brainbox-sidecar /brainbox-sidecar
USER 65532:65532
ENTRYPOINT ["/brainbox-sidecar"]
CMD ["run"]
