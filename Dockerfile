# The weft image: the one static binary (control plane, storage node,
# gateway, CLI) on an empty base. No registry is needed to build it: the
# binary is built on the host first (CGO_ENABLED=0, see `make build`).
#
#   make build && docker build -t weft:dev .
#
# Every role is a subcommand: `docker run weft:dev control …`, `… node …`,
# `… gateway …`, and `docker exec CONTAINER /weft admin …` for the operator.
FROM scratch
COPY bin/weft /weft
# scratch has no /tmp; WORKDIR creates it (weft itself writes only under
# --data-dir, but Go's os.TempDir and anything that follows it expect one).
WORKDIR /tmp
ENV TMPDIR=/tmp
WORKDIR /data
ENTRYPOINT ["/weft"]
CMD ["--help"]
