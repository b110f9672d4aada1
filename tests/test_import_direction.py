"""The package's rooms import each other one way only (docs/architecture.md, "Which way the imports go"): no import
circle among module-level imports, eval/ never imports report/, objectives/ never imports training/, utils/ imports
no room. Read from the source with ast, so nothing is imported to check it."""
import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, dict[str, bool]]:
    """module -> {agsm module it imports: whether at module level (False: inside a function)}."""
    modules = {_module(p): p for p in SRC.rglob("*.py")}
    found: dict[str, dict[str, bool]] = {m: {} for m in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "agsm":
                target = node.module
            else:
                continue
            # `from . import x` imports the module x when there is one
            targets = [target] + [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]
            for t in targets:
                if t in modules:
                    found[name][t] = found[name].get(t, False) or node in tree.body
    return found


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "agsm"


@pytest.fixture(scope="module")
def imports():
    return _imports()


def test_no_import_circle_at_module_level(imports):
    graph = {m: [t for t, top in targets.items() if top] for m, targets in imports.items()}
    done, circles = set(), []

    def visit(module, path):
        for nxt in graph[module]:
            if nxt in path:
                circles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in done:
                visit(nxt, path + [nxt])
        done.add(module)

    for module in graph:
        if module not in done:
            visit(module, [module])
    assert not circles, circles[:3]


@pytest.mark.parametrize("room,forbidden", [("eval", {"report", "study"}), ("objectives", {"training", "eval"}),
                                            ("utils", {"backbones", "tokens", "data", "objectives", "training",
                                                       "eval", "report", "study", "editing", "shapes"}),
                                            ("tokens", {"training", "objectives", "eval"}),
                                            ("metrics", {"eval", "report", "training"}),
                                            ("guidance", {"training", "eval", "report", "study"})])
def test_rooms_import_one_way(imports, room, forbidden):
    wrong = sorted(f"{m} -> {t}" for m, targets in imports.items() if _room(m) == room
                   for t in targets if _room(t) in forbidden)
    assert not wrong, wrong


def test_the_check_sees_imports():
    """The reader finds what it must: without this, an empty graph would pass the tests above."""
    imports = _imports()
    assert "agsm.eval.coco" in imports["agsm.report.cli"]
    assert imports["agsm.training.loop"].get("agsm.objectives") is True
