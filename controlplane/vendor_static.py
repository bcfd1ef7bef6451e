"""Copy the dashboard's browser dependencies from node_modules into dashboard/static/vendor/.

The copies are committed, so building or deploying the web app needs no npm. ``--check`` (part of ``make test``)
fails when a committed copy differs from the installed package, or the installed package is not the exact
version package.json pins. Refresh after changing a pin: ``npm install --save-exact htmx.org@X`` then
``python -m controlplane.vendor_static``.

Standard library only: it runs before Django is configured.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR_DIR = Path("dashboard/static/vendor")


@dataclass(frozen=True)
class VendoredFile:
    package: str
    source: str  # inside node_modules/<package>/
    target: str  # inside dashboard/static/vendor/


VENDORED = (
    VendoredFile("htmx.org", "dist/htmx.min.js", "htmx/htmx.min.js"),
    VendoredFile("htmx.org", "LICENSE", "htmx/LICENSE"),
    VendoredFile("uplot", "dist/uPlot.iife.min.js", "uplot/uPlot.iife.min.js"),
    VendoredFile("uplot", "dist/uPlot.min.css", "uplot/uPlot.min.css"),
    VendoredFile("uplot", "LICENSE", "uplot/LICENSE"),
)


def _pinned(root: Path) -> dict[str, str]:
    manifest = json.loads((root / "package.json").read_text())
    return dict(manifest.get("dependencies", {}))


def _installed_version(root: Path, package: str) -> str | None:
    manifest = root / "node_modules" / package / "package.json"
    if not manifest.exists():
        return None
    return str(json.loads(manifest.read_text()).get("version"))


def _version_problems(root: Path) -> list[str]:
    pinned = _pinned(root)
    problems = []
    for package in sorted({f.package for f in VENDORED}):
        want = pinned.get(package)
        have = _installed_version(root, package)
        if want is None:
            problems.append(f"{package} is not a dependency in package.json")
        elif have is None:
            problems.append(f"{package} is not installed: run `npm install --no-save`")
        elif have != want:
            problems.append(
                f"{package} {have} is installed but package.json pins {want}: run `npm install --no-save`"
            )
    return problems


def vendor_copy(*, root: Path = ROOT) -> list[Path]:
    """Copy every vendored file from node_modules; returns the paths written. ValueError on a version mismatch."""
    problems = _version_problems(root)
    if problems:
        raise ValueError("; ".join(problems))
    written = []
    for item in VENDORED:
        target = root / VENDOR_DIR / item.target
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / "node_modules" / item.package / item.source, target)
        written.append(target)
    return written


def vendor_check(*, root: Path = ROOT) -> list[str]:
    """What is wrong with the committed copies (empty when they match the pinned, installed packages)."""
    problems = _version_problems(root)
    if problems:
        return problems
    for item in VENDORED:
        source = root / "node_modules" / item.package / item.source
        target = root / VENDOR_DIR / item.target
        if not source.exists():
            problems.append(f"{source.relative_to(root)} is missing from the installed package")
        elif not target.exists():
            problems.append(
                f"{target.relative_to(root)} is missing: run `python -m controlplane.vendor_static`"
            )
        elif source.read_bytes() != target.read_bytes():
            problems.append(
                f"{target.relative_to(root)} differs from {item.package}'s {item.source}: "
                "run `python -m controlplane.vendor_static`"
            )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check", action="store_true", help="only check the committed copies; exit 1 if stale"
    )
    args = parser.parse_args(argv)
    if args.check:
        problems = vendor_check()
        for problem in problems:
            print(f"vendor-check: {problem}", file=sys.stderr)
        if not problems:
            print(f"vendor-check: {len(VENDORED)} vendored files match package.json")
        return 1 if problems else 0
    try:
        written = vendor_copy()
    except ValueError as exc:
        print(f"vendor: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"vendor: wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
