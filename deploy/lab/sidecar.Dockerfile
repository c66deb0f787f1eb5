# The lab's sidecar image: one static binary, nothing else (no shell, no package manager).
FROM scratch
COPY brainbox-sidecar /brainbox-sidecar
USER 65532:65532
ENTRYPOINT ["/brainbox-sidecar"]
CMD ["run"]
