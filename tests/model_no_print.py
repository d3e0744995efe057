#!/usr/bin/env python3
"""model/ reports progress through callbacks and never prints (DESIGN §4): fails when a
model/*.c or *.h calls printf, puts, putchar or perror, or names stdout or stderr, outside
comments and string literals. Writing to a FILE the caller opened (a checkpoint) is fine."""
import pathlib, re, sys

root = pathlib.Path(sys.argv[1])
banned = re.compile(r'\b(printf|vprintf|puts|putchar|perror|stdout|stderr)\b')
# comments, string and character literals, in one pass so "/*" inside a string is text
token = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)

def blank(m):
    # keeps newlines so line numbers stay right
    return re.sub(r'[^\n]', ' ', m.group(0))

bad = 0
files = sorted(root.glob('*.c')) + sorted(root.glob('*.h'))
for f in files:
    code = token.sub(blank, f.read_text())
    for n, line in enumerate(code.split('\n'), 1):
        m = banned.search(line)
        if m:
            print(f'FAIL: {f.name}:{n}: {m.group(1)}: {f.read_text().split(chr(10))[n - 1].strip()}')
            bad = 1
if not files:
    print(f'FAIL: no sources under {root}')
    bad = 1
if not bad:
    print(f'ok: {len(files)} files under {root} print nothing')
sys.exit(bad)
