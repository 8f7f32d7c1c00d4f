"""The package layout is the design: a flat domain without aiohttp, two sites that never meet."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "onionchat"
SITES = ("onionchat.visitor", "onionchat.staff")
# The domain: every module directly in onionchat/ except the command line and catalog tools.
NOT_DOMAIN = {"__main__.py", "cli.py", "catalogs.py"}
WEB_SIDE = ("aiohttp", "onionchat.web", "onionchat.visitor", "onionchat.staff", "onionchat.tor", "jinja2")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, relative imports resolved, TYPE_CHECKING imports included."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def reaches(imported: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(name for name in imported if name.startswith(prefixes) and
                  any(name == p or name.startswith(p + ".") for p in prefixes))


def domain_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.glob("*.py") if p.name not in NOT_DOMAIN)


@pytest.mark.parametrize("path", domain_modules(), ids=lambda p: p.stem)
def test_the_domain_never_imports_the_web_side(path: Path) -> None:
    assert reaches(imports_of(path), WEB_SIDE) == [], f"{path.name} must stay free of aiohttp and the sites"


@pytest.mark.parametrize("site", SITES)
def test_a_site_never_imports_the_other(site: str) -> None:
    other = SITES[1 - SITES.index(site)]
    directory = PACKAGE / site.split(".")[1]
    for path in directory.rglob("*.py"):
        assert reaches(imports_of(path), (other,)) == [], f"{path.relative_to(PACKAGE)} imports {other}"


def test_shared_web_code_knows_no_site_but_the_server_that_runs_both() -> None:
    for path in (PACKAGE / "web").rglob("*.py"):
        found = reaches(imports_of(path), SITES)
        assert found == [] or path.name == "server.py", f"{path.name} imports {found}"


def test_the_checks_see_an_import(tmp_path: Path) -> None:
    """The layering checks would catch 'import aiohttp' in chat.py, or a relative import of the other site."""
    fake = PACKAGE / "chat.py"
    assert reaches(imports_of(fake), WEB_SIDE) == []
    planted = tmp_path / "chat.py"
    planted.write_text(fake.read_text(encoding="utf-8") + "\nimport aiohttp\n", encoding="utf-8")
    tree_imports = {alias.name for node in ast.walk(ast.parse(planted.read_text(encoding="utf-8")))
                    if isinstance(node, ast.Import) for alias in node.names}
    assert reaches(tree_imports, WEB_SIDE) == ["aiohttp"]
    assert "onionchat.staff.access" in imports_of(PACKAGE / "staff" / "chats.py")  # from .access import ...
