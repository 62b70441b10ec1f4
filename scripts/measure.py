#!/usr/bin/env python3
"""Code-shape measures for src/: lines per file before its unit-test module, and
function lengths (lines that are neither blank nor only a comment).

    python3 scripts/measure.py [--limit-file 600] [--limit-fn 60] [paths...]

Prints every file and function over the limits and the totals; exit 1 if any."""
import re, sys, pathlib

def strip(text):
    """Blank out comments, strings and char literals, keeping line structure."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith('//', i):
            j = text.find('\n', i)
            j = n if j < 0 else j
            out.append(' ' * (j - i)); i = j
        elif text.startswith('/*', i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith('/*', j): depth += 1; j += 2
                elif text.startswith('*/', j): depth -= 1; j += 2
                else: j += 1
            out.append(re.sub(r'[^\n]', ' ', text[i:j])); i = j
        elif c == 'r' and re.match(r'r#*"', text[i:i+10]) and not (i and (text[i-1].isalnum() or text[i-1]=='_')):
            m = re.match(r'r(#*)"', text[i:]); hashes = m.group(1)
            end = text.find('"' + hashes, i + len(m.group(0)))
            end = n if end < 0 else end + 1 + len(hashes)
            out.append(re.sub(r'[^\n]', ' ', text[i:end])); i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == '\\' else 1
            out.append(re.sub(r'[^\n]', ' ', text[i:j+1])); i = j + 1
        elif c == "'":
            m = re.match(r"'(\\.[^']*|[^\\'])'", text[i:])
            if m:
                out.append(' ' * len(m.group(0))); i += len(m.group(0))
            else:
                out.append(c); i += 1
        else:
            out.append(c); i += 1
    return ''.join(out)

def measure(path):
    raw = path.read_text()
    lines = raw.split('\n')
    code = strip(raw).split('\n')
    before_tests = len(lines)
    for k, l in enumerate(lines):
        if l.startswith('#[cfg(test)]') and k + 1 < len(lines) and lines[k+1].startswith('mod '):
            before_tests = k; break
    fns = []
    fn_re = re.compile(r'\bfn\s+([A-Za-z_][A-Za-z0-9_]*)')
    for k, l in enumerate(code[:before_tests]):
        m = fn_re.search(l)
        if not m: continue
        # find the opening brace of the body (skip declarations ending in ';')
        depth, started, count, end = 0, False, 0, None
        for j in range(k, before_tests):
            seg = code[j] if j != k else code[j][m.start():]
            if seg.strip(): count += 1
            for ch in seg:
                if not started and ch == ';' and depth == 0: end = -1; break
                if ch == '{': depth += 1; started = True
                elif ch == '}':
                    depth -= 1
                    if started and depth == 0: end = j; break
            if end is not None: break
        if end is None or end < 0: continue
        fns.append((m.group(1), k + 1, count))
    return before_tests, len(lines), fns

def main(argv):
    lim_file, lim_fn, paths = 600, 60, []
    it = iter(argv)
    for a in it:
        if a == '--limit-file': lim_file = int(next(it))
        elif a == '--limit-fn': lim_fn = int(next(it))
        else: paths.append(pathlib.Path(a))
    if not paths: paths = [pathlib.Path('src')]
    files = sorted(f for p in paths for f in ([p] if p.is_file() else p.rglob('*.rs')))
    bad, total = 0, 0
    for f in files:
        before, n, fns = measure(f)
        total += n
        if before > lim_file:
            print(f'file {f}: {before} lines before its tests (limit {lim_file})'); bad += 1
        for name, line, count in fns:
            if count > lim_fn:
                print(f'fn   {f}:{line} {name}: {count} lines (limit {lim_fn})'); bad += 1
    print(f'{len(files)} files, {total} lines; {bad} over the limits')
    return 1 if bad else 0

if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
