#!/usr/bin/env python3
"""Rewrites the `sources = {...}` list of memlab-scm-1.rockspec from csrc/*.c and csrc/alloc/*.c.
The rockspec's builtin build cannot glob; spec/08-package_spec.lua fails when the list drifts."""
import glob, re, sys

path = "memlab-scm-1.rockspec"
text = open(path).read()
files = sorted(glob.glob("csrc/*.c")) + sorted(glob.glob("csrc/alloc/*.c"))
lines, cur = [], "        "
for f in files:
    item = '"%s", ' % f
    if len(cur) + len(item) > 100:
        lines.append(cur.rstrip())
        cur = "        "
    cur += item
lines.append(cur.rstrip())
new = "      sources = {\n" + "\n".join(lines) + "\n      },\n"
text, n = re.subn(r"      sources = \{\n.*?\n      \},\n", new, text, flags=re.S)
if n != 1:
    sys.exit("rockspec: sources list not found")
open(path, "w").write(text)
