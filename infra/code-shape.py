#!/usr/bin/env python3
"""The size numbers of docs/codebase.md: the largest Rust files and the
functions of 80 lines or more, in production code (tests, benches and fuzz
targets left out; a file is read up to its first `#[cfg(test)]`).

Usage: infra/code-shape.py [--files N] [--min-lines N]
"""
import argparse
import re
import subprocess

FN = re.compile(r'^(\s*)(pub(\([^)]*\))?\s+)?(async\s+)?(const\s+)?(unsafe\s+)?fn\s+(\w+)')


def production_files():
    files = subprocess.check_output(['git', 'ls-files', '*.rs'], text=True).split()
    for f in files:
        if f.startswith(('tests/', 'fuzz/')) or '/tests/' in f or '/benches/' in f or f.endswith('/tests.rs'):
            continue
        yield f


def functions(path):
    lines = open(path, encoding='utf-8').read().split('\n')
    stop = next((i for i, l in enumerate(lines) if l.strip() == '#[cfg(test)]'), len(lines))
    i = 0
    while i < stop:
        m = FN.match(lines[i])
        if m:
            indent, name = len(m.group(1)), m.group(7)
            # A declaration without a body (a trait method) ends with `;`.
            j = i
            while j < stop and not lines[j].rstrip().endswith(('{', ';')):
                j += 1
            if j < stop and lines[j].rstrip().endswith('{'):
                end = j
                close = ' ' * indent + '}'
                while end < stop and not (lines[end].startswith(close) and lines[end][indent + 1:indent + 2] in ('', ' ', ';', ')')):
                    end += 1
                yield name, i + 1, end - i + 1
        i += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--files', type=int, default=8)
    ap.add_argument('--min-lines', type=int, default=80)
    a = ap.parse_args()
    sizes, long = [], []
    for f in production_files():
        sizes.append((sum(1 for _ in open(f, encoding='utf-8')), f))
        long += [(n, f, name, line) for name, line, n in functions(f) if n >= a.min_lines]
    print(f'largest files (lines):')
    for n, f in sorted(sizes, reverse=True)[:a.files]:
        print(f'  {n:5} {f}')
    print(f'{len(long)} functions of {a.min_lines} lines or more:')
    for n, f, name, line in sorted(long, reverse=True):
        print(f'  {n:5} {name} ({f}:{line})')


if __name__ == '__main__':
    main()
