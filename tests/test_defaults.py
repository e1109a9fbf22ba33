"""Every config default lives in one place: config/config.yaml (checked by the schema).

Read from the source: no function of the package gives a parameter named like a
config key a default value (None, "not given", is allowed), no module holds a
*_DEFAULTS dict, and no `.get(key, fallback)` supplies a config key's value. The
`tiledup` commands fill keys a block leaves out from config/config.yaml
(tiledup.run.config.defaults), the one loader.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tiledup.run.config import defaults, load_schema, read_config, schema_path

from workflow import REPO

PACKAGE = REPO / "src" / "tiledup"
CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def config_keys(block: dict) -> set[str]:
    """Every key name of the config, at any depth (blocks and leaves)."""
    keys = set()
    for key, value in block.items():
        keys.add(key)
        if isinstance(value, dict):
            keys |= config_keys(value)
    return keys


KEYS = config_keys(CONFIG)


def is_none(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def stated_defaults(source: str) -> list[str]:
    """Where a module states a value for a config key itself: `function(key=value)` signature defaults,
    module-level names with DEFAULT in them, and `.get("key", value)` fallbacks."""
    found = []
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = node.args
            positional = a.posonlyargs + a.args
            with_defaults = [*zip(positional[len(positional) - len(a.defaults):], a.defaults),
                             *((arg, d) for arg, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None)]
            name = getattr(node, "name", "lambda")
            found += [f"line {node.lineno}: {name}({arg.arg}={ast.unparse(d)})"
                      for arg, d in with_defaults if arg.arg in KEYS and not is_none(d)]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("get", "setdefault", "pop") and len(node.args) == 2
              and isinstance(node.args[0], ast.Constant) and node.args[0].value in KEYS
              and not is_none(node.args[1])):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        found += [f"line {node.lineno}: {t.id} = ..." for t in targets
                  if isinstance(t, ast.Name) and "DEFAULT" in t.id.upper()]
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", [pytest.param(p, id=p.relative_to(PACKAGE).as_posix()) for p in MODULES])
def test_no_module_states_a_default_of_its_own(path):
    assert stated_defaults(path.read_text()) == []


def test_the_check_finds_stated_defaults():
    """The check itself: each way of stating a default is caught, None and other names are not."""
    source = '''
EVIDENCE_DEFAULTS = {"colour_levels": 40}
def train(train_path, workers=2, *, epochs=5, model=None, out_name="x"):
    return {}.get("pairs", 3000), {}.get("pairs"), {}.get("other", 1)
def ok(images_dir, truth_path=None, *, seed, fractions=None):
    pass
'''
    assert stated_defaults(source) == ["line 3: train(workers=2)", "line 3: train(epochs=5)",
                                       "line 4: {}.get('pairs', 3000)", "line 2: EVIDENCE_DEFAULTS = ..."]


def test_every_schema_key_has_its_default_in_the_config_file():
    """config/config.yaml is complete: every key the schema allows has its value there ({} = "the
    defaults of the block it mirrors", e.g. evaluate.val_augment)."""
    missing = []

    def walk(schema, config, path):
        for key, sub in schema.get("properties", {}).items():
            if key not in config:
                missing.append(path + key)
            elif sub.get("type") == "object" and "properties" in sub and config[key] != {}:
                walk(sub, config[key], f"{path}{key}.")

    walk(load_schema(schema_path(REPO)), CONFIG, "")
    assert missing == []


def test_the_package_ships_the_config_file():
    assert defaults() == CONFIG
    assert read_config(REPO / "config" / "config.yaml") == CONFIG


def test_a_config_file_is_merged_over_the_defaults_and_checked(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("verify: {dupnet_threshold: 0.7}\nevidence: {min_pixels: 20}\n")
    config = read_config(mine)
    assert config["verify"] == {**CONFIG["verify"], "dupnet_threshold": 0.7}
    assert config["evidence"]["min_pixels"] == 20 and config["tiles"] == CONFIG["tiles"]
    mine.write_text("verify: {dupnet_treshold: 0.7}\n")
    with pytest.raises(Exception, match=r"mine.yaml[\s\S]*did you mean `verify.dupnet_threshold`"):
        read_config(mine)


def test_an_options_block_left_empty_takes_the_config_defaults(tmp_path):
    """`tiledup pairs --options '{}'` runs with config/config.yaml's `pairs` block (here: as the
    workflow would pass it), and a key the command does not know is still named."""
    from tiledup.cli import _call

    seen = {}
    _call(lambda **kw: seen.update(kw), "pairs", {"nondup_per_dup": 2.0}, tiles_path="t")
    assert seen == {**CONFIG["pairs"], "nondup_per_dup": 2.0, "tiles_path": "t"}
    proc = subprocess.run([sys.executable, "-m", "tiledup.cli", "pairs", "--tiles", "x", "--out", str(tmp_path / "p"),
                           "--options", '{"balanse": "rank"}'], capture_output=True, text=True,
                          cwd=tmp_path, env={"PYTHONPATH": str(REPO / "src"), "PATH": str(Path(sys.executable).parent)})
    assert proc.returncode == 2 and "unknown pairs option(s): balanse" in proc.stderr
