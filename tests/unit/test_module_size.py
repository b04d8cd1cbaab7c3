"""No module of the product above 600 lines (issue 19): a module that long holds more than
one concern. Migrations are generated; tests are exempt."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ops", "explainability", "portal", "workers")
LIMIT = 600


def long_modules(root: Path = ROOT, limit: int = LIMIT) -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > limit:
                found.append(f"{path.relative_to(root)}: {lines} lines")
    return found


def test_no_module_is_longer_than_the_limit():
    assert long_modules() == [], f"split these by concern (at most {LIMIT} lines each)"


def test_the_check_finds_a_long_module(tmp_path):
    (tmp_path / "ops" / "migrations").mkdir(parents=True)
    (tmp_path / "ops" / "big.py").write_text("x = 1\n" * (LIMIT + 1))
    (tmp_path / "ops" / "small.py").write_text("x = 1\n" * LIMIT)
    (tmp_path / "ops" / "migrations" / "0001_big.py").write_text("x = 1\n" * (LIMIT * 2))
    assert long_modules(tmp_path) == [f"ops/big.py: {LIMIT + 1} lines"]
