"""The layering of docs/architecture.md over the real import graph of vla_ros/.

Every import points down the order, nothing imports in a cycle, the cores never load rclpy, and
inference never loads training.
"""
import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vla_ros"
# Bottom to top, as docs/architecture.md lists them: a module may import its own layer and those below.
LAYERS = [
    ["vla_ros", "vla_ros.errors"],
    ["vla_ros.resources", "vla_ros.terminal", "vla_ros.process", "vla_ros.stats", "vla_ros.params", "vla_ros.media"],
    ["vla_ros.embodiment"],
    ["vla_ros.control"],
    ["vla_ros.sim"],
    ["vla_ros.data"],
    ["vla_ros.model"],
    ["vla_ros.policy"],
    ["vla_ros.ros"],
    ["vla_ros.nodes"],
    ["vla_ros.bringup"],
    ["vla_ros.rollout", "vla_ros.doctor"],
    ["vla_ros.commands"],
    ["vla_ros.cli"],
]
CORES = ["embodiment", "control", "policy", "model", "data", "sim"]


def module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Each module's vla_ros imports, anywhere in its file (functions included): {module: {module}}."""
    modules = {module_name(root, path): path for path in root.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join([*package.split(".")[:len(package.split(".")) - node.level + 1], *filter(None,
                                                                                                             [base])])
                # `from vla_ros.policy import wire` imports a module; `from vla_ros.policy import make_policy` the
                # package.
                targets |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
        graph[name] = {t for t in targets if t == "vla_ros" or t.startswith("vla_ros.")}
    return graph


def layer(module: str) -> int:
    matches = [(len(prefix), index) for index, prefixes in enumerate(LAYERS) for prefix in prefixes
               if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} is in no layer: add it to LAYERS and docs/architecture.md"
    return max(matches)[1]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{source} (layer {layer(source)}) imports {target} (layer {layer(target)})"
                  for source, targets in graph.items() for target in targets if layer(target) > layer(source))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles, each as the modules along it (depth-first search over the graph)."""
    found, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                found.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return found


def test_every_import_points_down_the_layers_and_none_is_circular():
    graph = import_graph(PACKAGE)
    assert len(graph) > 80, "the whole package was read"
    assert upward_imports(graph) == []
    assert cycles(graph) == []


def test_an_upward_import_or_a_cycle_is_caught(tmp_path):
    """Planted in a copy of the package: an upward import and a cycle are reported.

    The controller core imports a node, and two modules import each other.
    """
    copy = tmp_path / "vla_ros"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    pd = copy / "control" / "pd.py"
    pd.write_text(pd.read_text() + "\n\ndef _late():\n    from vla_ros.nodes.base import VlaNode\n")
    stats = copy / "stats.py"
    stats.write_text(stats.read_text() + "\nfrom vla_ros import params\n")
    params = copy / "params.py"
    params.write_text(params.read_text() + "\nfrom vla_ros.stats import Window\n")
    graph = import_graph(copy)
    assert upward_imports(graph) == ["vla_ros.control.pd (layer 3) imports vla_ros.nodes.base (layer 9)"]
    assert ["vla_ros.params", "vla_ros.stats", "vla_ros.params"] in cycles(graph)


def fresh_imports(modules: list[str]) -> set[str]:
    """The modules loaded after importing `modules` in a fresh interpreter."""
    code = f"import importlib, sys\nfor m in {modules!r}:\n    importlib.import_module(m)\nprint(sorted(sys.modules))\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return set(ast.literal_eval(result.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("core", CORES)
def test_core_does_not_import_rclpy(core):
    """Importing every module of a core leaves rclpy unloaded."""
    modules = sorted(name for name in import_graph(PACKAGE) if name.startswith(f"vla_ros.{core}"))
    loaded = fresh_imports(modules)
    assert not {m for m in loaded if m.split(".")[0] in ("rclpy", "rcl_interfaces")}, f"{core} pulls in ROS"


def test_inference_does_not_load_training_or_bag_reading_code():
    """The builtin backend loads the model, not its training loop, datasets or rosbags."""
    loaded = fresh_imports(["vla_ros.policy.builtin"])
    assert not {m for m in loaded if m.startswith(("vla_ros.data", "vla_ros.model.training", "rosbags"))}
