#!/usr/bin/env python3
"""Structure checks over the crates' sources (tests, benches and examples excluded):
no file over 500 lines, no function over 100 lines, no cycle among the library's top-level
modules. Prints what it found; exits 1 on any violation."""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates")
MAX_FILE_LINES = 500
MAX_FN_LINES = 100


def sources():
    for crate in sorted(os.listdir(ROOT)):
        src = os.path.join(ROOT, crate, "src")
        for root, _, files in os.walk(src):
            for name in sorted(files):
                if name.endswith(".rs"):
                    yield os.path.join(root, name)


def long_functions(path):
    lines = open(path, encoding="utf-8").read().split("\n")
    found, i = [], 0
    while i < len(lines):
        line = lines[i]
        if re.match(r"\s*#\[cfg\(test\)\]", line):
            break
        match = re.search(r"\bfn\s+(\w+)", line)
        if match and not line.strip().startswith("//"):
            depth, started, j = 0, False, i
            while j < len(lines):
                text = re.sub(r'"(\\.|[^"\\])*"', '""', lines[j]).split("//")[0]
                if not started and ";" in text and "{" not in text:
                    break
                for char in text:
                    if char == "{":
                        depth, started = depth + 1, True
                    elif char == "}":
                        depth -= 1
                if started and depth <= 0:
                    break
                j += 1
            if started and j - i + 1 > MAX_FN_LINES:
                found.append((match.group(1), i + 1, j - i + 1))
        i += 1
    return found


def module_cycles(src):
    modules = {}
    for entry in os.listdir(src):
        path = os.path.join(src, entry)
        if entry.endswith(".rs") and entry not in ("lib.rs", "main.rs"):
            modules.setdefault(entry[:-3], []).append(path)
        elif os.path.isdir(path):
            modules.setdefault(entry, []).extend(
                os.path.join(r, f) for r, _, fs in os.walk(path) for f in fs if f.endswith(".rs"))
    edges = {name: set() for name in modules}
    for name, files in modules.items():
        for path in files:
            text = open(path, encoding="utf-8").read().split("#[cfg(test)]")[0]
            text = re.sub(r"//[^\n]*", "", text)
            used = set(re.findall(r"crate::(\w+)", text))
            for block in re.findall(r"crate::\{([^}]*)\}", text):
                used |= set(re.findall(r"\b(\w+)", block))
            edges[name] |= {other for other in used if other in modules and other != name}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in edges[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(modules):
        if node not in index:
            visit(node)
    return cycles


def main():
    problems = []
    for path in sources():
        count = open(path, encoding="utf-8").read().count("\n")
        if count > MAX_FILE_LINES:
            problems.append(f"{path}: {count} lines (at most {MAX_FILE_LINES})")
        for name, line, length in long_functions(path):
            problems.append(f"{path}:{line}: fn {name} is {length} lines (at most {MAX_FN_LINES})")
    for cycle in module_cycles(os.path.join(ROOT, "strongbox", "src")):
        problems.append("module cycle in the library: " + " -> ".join(cycle))
    for problem in problems:
        print(problem)
    print(f"structure: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
