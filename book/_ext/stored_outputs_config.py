"""Write a copy of the book's ``_config.yml`` that builds from the notebooks' STORED outputs.

``make pdf`` uses it (and the browser test does the same): nbval already checks
that the stored outputs are what the code produces, so the PDF and the browser
test need not re-execute every notebook. Local extension paths are made
absolute, because jupyter-book resolves them relative to the config file.

Usage: ``python book/_ext/stored_outputs_config.py OUT.yml`` (from the repository root).
"""
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def stored_outputs_config(out_path):
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf8"))
    config.setdefault("execute", {})["execute_notebooks"] = "off"
    local = (config.get("sphinx") or {}).get("local_extensions") or {}
    for name, path in local.items():
        local[name] = str((ROOT / path).resolve())
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf8")
    return out_path


if __name__ == "__main__":
    stored_outputs_config(sys.argv[1])
