#!/usr/bin/env sh
# Generates test/fixtures/sample.flv, the stream `npm start` publishes when ffmpeg is absent and
# the end-to-end tests publish through the proxy: 8 s of lavfi testsrc (320x180, 10 fps, H.264
# baseline, no B-frames, a keyframe every second) and a sine tone (AAC-LC mono 22.05 kHz).
# Run once from the repository root; the output is committed (about 170 KB).
set -eu
out="${1:-test/fixtures/sample.flv}"
ffmpeg -hide_banner -loglevel error -y \
  -f lavfi -i "testsrc=size=320x180:rate=10" \
  -f lavfi -i "sine=frequency=440:beep_factor=4:sample_rate=22050" \
  -t 8 -map 0:v -map 1:a \
  -c:v libx264 -preset veryfast -profile:v baseline -pix_fmt yuv420p \
  -g 10 -keyint_min 10 -sc_threshold 0 -bf 0 -b:v 120k -maxrate 120k -bufsize 240k \
  -c:a aac -b:a 32k -ac 1 \
  -map_metadata -1 -fflags +bitexact -flags:v +bitexact -flags:a +bitexact \
  -f flv "$out"
ls -l "$out"
