# syntax=docker/dockerfile:1
# rtcrelay: a static binary on distroless, run as a non-root user.
#
#   docker build -t rtcrelay .
#   docker run --rm -p 8080:8080 -p 8081:8081 -p 31001:31001/udp rtcrelay --ip 203.0.113.10
#
# --ip must be the address browsers reach (the host's public or LAN IP): the media socket is one UDP port, so
# publish it 1:1 (the same number inside and outside). A config file can be mounted and given with --config
# (see examples/rtcrelay.conf).

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The same command TestDockerfileBuild (cmd/rtcrelay) runs: keep them in step.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/rtcrelay ./cmd/rtcrelay

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/rtcrelay /rtcrelay
COPY examples/rtcrelay.conf /etc/rtcrelay/rtcrelay.conf
USER nonroot:nonroot
# ws, wss, http (REST, pages, /metrics), https, media (UDP)
EXPOSE 8080 8443 8081 8444 31001/udp
ENTRYPOINT ["/rtcrelay"]
CMD ["--listen-host", "0.0.0.0"]
