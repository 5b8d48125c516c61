"""What the test suite costs: CPU seconds of the whole run and of each test, SLURM jobs included.

Runs `python -m pytest <args>` (this file is also its pytest plugin, `-p suite_cpu`) and reports:
- wall time;
- user+sys of the pytest process tree (`wait4` rusage of pytest: pytest and every descendant it waited for);
- user+sys of the SLURM jobs (processes under `slurmstepd`, sampled from /proc every 0.2 s: they are slurmd's, not
  pytest's, descendants), attributed to the test that was running;
- system-wide busy CPU seconds from /proc/stat over the run (includes the SLURM jobs, and whatever else runs on
  the machine: equal to the two above only on an otherwise idle machine), and this script's own sampling cost;
- per test (setup + call + teardown; a session or module fixture is charged to the first test that uses it): wall,
  CPU of the pytest process, of its waited-for children, of the SLURM jobs, and the system-wide CPU; the slowest by
  CPU and by wall.

    python benchmarks/suite_cpu.py [--json out.json] [--top 25] [--compare before.json] [--modules] [-- pytest args]

`--compare` prints, per test present in both runs, the before/after CPU of the tests whose cost changed.
`--modules` also records which modules of landscape_sweep/ and hydra_plugins/ the run executed (imported, or ran as
`__main__`: the pytest process and every Python subprocess it starts, via a `sitecustomize` on PYTHONPATH) and exits
1 naming those it never executed: e.g. `python benchmarks/suite_cpu.py --modules -- -m "not slow"` checks that the
quick tier touches every module.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")
LOG_ENV, MODULES_ENV = "SUITE_CPU_LOG", "SUITE_CPU_MODULES"
PACKAGES = (REPO / "landscape_sweep", REPO / "hydra_plugins")

SITECUSTOMIZE = """
import atexit, os, sys

_root, _out, _ran = {root!r}, os.environ.get({env!r}), set()


def _hook(event, args):  # every module body executed: imports, and runpy's `python -m` / run_module
    if event == "exec":
        f = getattr(args[0], "co_filename", "")
        if f.startswith(_root):
            _ran.add(f)


def _dump():
    files = set(_ran)
    for module in list(sys.modules.values()):
        f = getattr(module, "__file__", None) or ""
        if f.startswith(_root):
            files.add(f)
    with open(os.path.join(_out, f"{{os.getpid()}}.txt"), "w") as fh:
        fh.write("\\n".join(sorted(os.path.relpath(f, _root) for f in files)))


if _out:
    sys.addaudithook(_hook)
    atexit.register(_dump)
"""


def busy_seconds() -> float:
    """System-wide busy CPU seconds since boot (/proc/stat: user nice system irq softirq steal)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / TICK


def cpu(r: resource.struct_rusage) -> float:
    return r.ru_utime + r.ru_stime


# --- the pytest plugin (imported by pytest in the child process) ---


def _write(record: dict) -> None:
    path = os.environ.get(LOG_ENV)
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


_outcomes: dict[str, str] = {}


def pytest_runtest_logreport(report) -> None:
    """The test's outcome: failed or skipped if any phase was, else passed."""
    if _outcomes.get(report.nodeid, "passed") == "passed":
        _outcomes[report.nodeid] = report.outcome


try:
    import pytest

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item, nextitem):
        s0, c0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        b0, t0 = busy_seconds(), time.monotonic()
        yield
        t1, b1 = time.monotonic(), busy_seconds()
        s1, c1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        _write({
            "test": item.nodeid, "t0": t0, "t1": t1, "wall": t1 - t0, "self": cpu(s1) - cpu(s0),
            "children": cpu(c1) - cpu(c0), "system": b1 - b0, "outcome": _outcomes.get(item.nodeid, "?"),
        })  # fmt: skip

except ImportError:  # the runner side does not need pytest
    pass


# --- the runner ---


def _proc_table() -> dict[int, tuple[str, int, int, int]]:
    """pid -> (comm, ppid, starttime, utime+stime ticks) of every process."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                text = f.read()
        except OSError:
            continue
        comm = text[text.index("(") + 1 : text.rindex(")")]
        rest = text[text.rindex(")") + 2 :].split()
        table[int(name)] = (comm, int(rest[1]), int(rest[19]), int(rest[11]) + int(rest[12]))
    return table


class SlurmSampler(threading.Thread):
    """CPU of every process under a `slurmstepd` (the SLURM jobs), as (time, ticks) increments."""

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.interval, self.stop, self.seen, self.timeline = interval, threading.Event(), {}, []
        self.own_cpu = 0.0

    def sample(self) -> None:
        table = _proc_table()
        children: dict[int, list[int]] = {}
        for pid, (_, ppid, _, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        todo = [pid for pid, row in table.items() if row[0] == "slurmstepd"]
        now = time.monotonic()
        while todo:
            pid = todo.pop()
            todo.extend(children.get(pid, []))
            _, _, start, ticks = table[pid]
            key = (pid, start)
            delta = ticks - self.seen.get(key, 0)
            if delta > 0:
                self.timeline.append((now, delta / TICK))
                self.seen[key] = ticks

    def run(self) -> None:
        t0 = time.thread_time()
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.interval)
        self.sample()
        self.own_cpu = time.thread_time() - t0


def run_suite(pytest_args: list[str], modules: bool) -> dict:
    work = Path(tempfile.mkdtemp(prefix="suite_cpu-"))
    log = work / "tests.jsonl"
    env = dict(os.environ)
    paths = [str(Path(__file__).parent)]
    if modules:
        site, out = work / "site", work / "modules"
        site.mkdir()
        out.mkdir()
        (site / "sitecustomize.py").write_text(SITECUSTOMIZE.format(root=str(REPO) + os.sep, env=MODULES_ENV))
        paths.insert(0, str(site))
        env[MODULES_ENV] = str(out)
    env["PYTHONPATH"] = os.pathsep.join([*paths, *filter(None, [env.get("PYTHONPATH")])])
    env[LOG_ENV] = str(log)
    sampler = SlurmSampler()
    sampler.start()
    b0, t0 = busy_seconds(), time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "suite_cpu", *pytest_args], cwd=REPO, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall, system = time.monotonic() - t0, busy_seconds() - b0
    sampler.stop.set()
    sampler.join()
    tests = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    for t in tests:  # SLURM job CPU sampled while the test ran
        t["slurm"] = sum(c for when, c in sampler.timeline if t["t0"] <= when <= t["t1"] + sampler.interval)
        t["cpu"] = t["self"] + t["children"] + t["slurm"]
    result = {
        "pytest_args": pytest_args,
        "returncode": proc.returncode,
        "wall_s": wall,
        "tree_cpu_s": cpu(usage),
        "tree_user_s": usage.ru_utime,
        "tree_sys_s": usage.ru_stime,
        "slurm_cpu_s": sum(c for _, c in sampler.timeline),
        "system_cpu_s": system,
        "sampler_cpu_s": sampler.own_cpu,
        "tests": tests,
    }
    if modules:
        seen = set()
        for f in (work / "modules").iterdir():
            seen.update(line for line in f.read_text().splitlines() if line)
        every = {str(p.relative_to(REPO)) for pkg in PACKAGES for p in pkg.rglob("*.py")}
        result["modules_imported"] = sorted(seen & every)
        result["modules_missing"] = sorted(every - seen)
    return result


def show(result: dict, top: int) -> None:
    tests = result["tests"]
    print(f"\npytest {' '.join(result['pytest_args'])}: exit {result['returncode']}, {len(tests)} tests")
    print(f"wall {result['wall_s']:.1f} s")
    print(f"CPU  pytest tree (user+sys) {result['tree_cpu_s']:.1f} s "
          f"(user {result['tree_user_s']:.1f}, sys {result['tree_sys_s']:.1f})")  # fmt: skip
    print(f"     SLURM jobs (sampled) {result['slurm_cpu_s']:.1f} s")
    print(f"     tree + SLURM jobs {result['tree_cpu_s'] + result['slurm_cpu_s']:.1f} s")
    print(f"     system-wide (/proc/stat, everything on the machine) {result['system_cpu_s']:.1f} s; "
          f"of it this script's sampler {result['sampler_cpu_s']:.1f} s")  # fmt: skip
    per_test = sum(t["self"] + t["children"] for t in tests)
    print(f"     outside tests (start, collection, session teardown): {result['tree_cpu_s'] - per_test:.1f} s")
    for key, title in (("cpu", "CPU (pytest process + children + SLURM jobs)"), ("wall", "wall")):
        print(f"\n{top} slowest by {title}:")
        print(f"{'cpu s':>7} {'wall s':>7} {'self':>6} {'child':>6} {'slurm':>6} {'system':>7}  test")
        for t in sorted(tests, key=lambda t: -t[key])[:top]:
            print(f"{t['cpu']:7.1f} {t['wall']:7.1f} {t['self']:6.1f} {t['children']:6.1f} {t['slurm']:6.1f} "
                  f"{t['system']:7.1f}  {t['test']}")  # fmt: skip
    outcomes = [t["outcome"] for t in tests]
    print(f"\nexit {result['returncode']}: " + ", ".join(f"{outcomes.count(o)} {o}" for o in sorted(set(outcomes))))
    if "modules_missing" in result:
        print(f"\nmodules imported: {len(result['modules_imported'])}; never imported: "
              f"{', '.join(result['modules_missing']) or 'none'}")  # fmt: skip


def compare(before: dict, after: dict, threshold: float = 0.5) -> None:
    old, new = ({t["test"]: t for t in r["tests"]} for r in (before, after))
    rows = [(old[k]["cpu"], new[k]["cpu"], old[k]["wall"], new[k]["wall"], k) for k in old if k in new]
    rows = [r for r in rows if abs(r[0] - r[1]) >= threshold]
    print(f"\nper test, before -> after (CPU s, wall s), changed by >= {threshold} s:")
    for a, b, wa, wb, k in sorted(rows, key=lambda r: r[1] - r[0]):
        print(f"{a:7.1f} -> {b:6.1f}   {wa:6.1f} -> {wb:6.1f}  {k}")
    gone = sorted(set(old) - set(new))
    added = sorted(set(new) - set(old))
    print(f"only before ({len(gone)}): {sum(old[k]['cpu'] for k in gone):.1f} s CPU")
    for k in gone:
        print(f"  {old[k]['cpu']:6.1f}  {k}")
    print(f"only after ({len(added)}): {sum(new[k]['cpu'] for k in added):.1f} s CPU")
    for k in added:
        print(f"  {new[k]['cpu']:6.1f}  {k}")
    for r in (before, after):
        print(f"total: tree {r['tree_cpu_s']:.1f} + SLURM {r['slurm_cpu_s']:.1f} = "
              f"{r['tree_cpu_s'] + r['slurm_cpu_s']:.1f} s CPU, wall {r['wall_s']:.1f} s")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the full result (every test) here")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--compare", type=Path, help="a --json file of an earlier run")
    parser.add_argument("--modules", action="store_true", help="check that every package module is imported")
    parser.add_argument("pytest_args", nargs="*", help="after --: arguments for pytest (default: -q -rs)")
    args = parser.parse_args(argv)
    result = run_suite(args.pytest_args or ["-q", "-rs"], args.modules)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    show(result, args.top)
    if args.compare:
        compare(json.loads(args.compare.read_text()), result)
    if result.get("modules_missing"):
        return 1
    return result["returncode"]


if __name__ == "__main__":
    sys.exit(main())
