#!/usr/bin/env python3
"""Assembles the playground in OUT from wasm-bindgen's output in BINDGEN and playground/web:
the page, its style and script, wasm-bindgen's `no-modules` glue, and the WebAssembly module
as base64 in a plain script, so the page works from file:// (where browsers refuse to fetch a
.wasm) as well as from any static host. No network, no server."""
import base64
import os
import shutil
import sys

bindgen, out = sys.argv[1], sys.argv[2]
web = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web")
os.makedirs(out, exist_ok=True)
for name in os.listdir(web):
    shutil.copy(os.path.join(web, name), os.path.join(out, name))
shutil.copy(os.path.join(bindgen, "fanout_playground.js"), os.path.join(out, "fanout_playground.js"))
with open(os.path.join(bindgen, "fanout_playground_bg.wasm"), "rb") as f:
    module = base64.b64encode(f.read()).decode("ascii")
with open(os.path.join(out, "fanout_playground_wasm.js"), "w") as f:
    f.write("// fanout-core's preview compiled to WebAssembly (base64), for file:// use.\n")
    f.write(f'var FANOUT_PLAYGROUND_WASM = "{module}";\n')
total = sum(os.path.getsize(os.path.join(out, n)) for n in os.listdir(out))
print(f"playground: {out}/index.html ({total / 1024:.0f} KiB in {len(os.listdir(out))} files)")
