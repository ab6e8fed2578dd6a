#!/bin/sh
# Write fixtures/ (a throwaway root, its verification time, a signed strict bundle) and seed
# corpus/{archive,manifest,signature,input} from the shipped policies and inputs.
# Run from this folder; re-run after changing the shipped policies.
set -eu
cd "$(dirname "$0")"
rm -rf fixtures corpus/archive corpus/manifest corpus/signature
(cd ../../.. && cargo run -q -p garrison-policy --example fuzz_seeds -- policy/garrison-policy/fuzz)
