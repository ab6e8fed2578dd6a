#!/bin/sh
# Seed the parse_and_replay corpus with every real log in testdata/ (run from this folder).
set -eu
mkdir -p corpus/parse_and_replay
cp ../../../testdata/eventlogs/*.bin corpus/parse_and_replay/
