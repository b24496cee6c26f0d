import json
import subprocess
import sys

import rag


def test_public_api_is_small_and_stable():
    assert sorted(rag.__all__) == [
        "Answer", "Citation", "Engine", "Hit", "IngestReport", "Passage", "QueryParams", "RagError", "Settings", "load_settings",
    ]  # fmt: skip
    for name in rag.__all__:
        assert getattr(rag, name) is not None


def test_import_rag_is_cheap():
    """Importing the library loads none of the heavy packages: they load where they are used."""
    code = "import sys, json, rag; print(json.dumps(sorted(m for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(json.loads(out))
    heavy = {"torch", "sentence_transformers", "transformers", "gradio", "xllamacpp", "chromadb", "langchain_chroma", "tiktoken"}
    assert not heavy & loaded, heavy & loaded


def _imports(path):
    """Every module a file imports (top level or inside functions)."""
    import ast

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names)


def test_library_never_imports_ui_or_evals():
    from pathlib import Path

    for path in Path(rag.__file__).parent.rglob("*.py"):
        for module in _imports(path):
            assert module.split(".")[0] not in ("ui", "evals", "gradio"), f"{path} imports {module}"


def test_shells_use_the_public_api_only():
    """ui/ and evals/ reach the library through `rag`'s public names (and `rag.cli` to register a command)."""
    import ast
    from pathlib import Path

    root = Path(rag.__file__).parents[1]
    allowed_modules = {"rag", "rag.cli"}
    for path in [*root.joinpath("ui").rglob("*.py"), *root.joinpath("evals").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "rag":
                assert node.module in allowed_modules, f"{path.name} imports {node.module}"
                if node.module == "rag":
                    assert {a.name for a in node.names} <= set(rag.__all__), f"{path.name} imports private names of rag"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert alias.name.split(".")[0] != "rag" or alias.name == "rag", f"{path.name} imports {alias.name}"
