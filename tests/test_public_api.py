import json
import subprocess
import sys

import rag


def test_public_api_is_small_and_stable():
    assert sorted(rag.__all__) == [
        "Answer", "Citation", "Client", "ConfigError", "Conversation", "ConversationsUnavailableError", "Document",
        "Engine", "Hit", "IngestReport", "InputError", "LexicalIndex", "Passage", "QueryParams", "RagError", "Settings",
        "StoreUnavailableError", "Way", "claim_stands", "load_settings", "turns",
    ]  # fmt: skip
    for name in rag.__all__:
        assert getattr(rag, name) is not None


def test_import_rag_is_cheap():
    """Importing the library loads none of the heavy packages: they load where they are used."""
    code = "import sys, json, rag; print(json.dumps(sorted(m for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(json.loads(out))
    heavy = {
        "torch",
        "sentence_transformers",
        "transformers",
        "gradio",
        "xllamacpp",
        "chromadb",
        "langchain_chroma",
        "tiktoken",
    }
    assert not heavy & loaded, heavy & loaded


def _imports(path):
    """Every module a file imports (top level or inside functions)."""
    import ast

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "rag":  # `from rag import cite` imports rag.cite
            yield from (f"rag.{a.name}" for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
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


# The data flow as layers: a module may import only modules of lower layers, so there is no cycle and no arrow up.
LAYERS = [
    {"rag.errors", "rag._offline", "rag.question"},
    {"rag.config", "rag.text", "rag.prompt"},
    {"rag.load", "rag.chunk", "rag.onnx_query", "rag.lexical", "rag.store", "rag.llm.model_file", "rag.llm.state"},
    {"rag.llm.extractive"},
    {"rag.embed", "rag.ledger", "rag.retrieve", "rag.context", "rag.llm.local", "rag.llm.remote"},
    {"rag.llm", "rag.cite", "rag.catalog", "rag.whole"},
    {"rag.condense", "rag.index"},
    {"rag.answer", "rag.admin", "rag.documents"},
    {"rag.conversations"},
    {"rag.engine", "rag.client"},
    {"rag.cli", "rag"},
    {"rag.__main__"},
]


def test_imports_inside_the_library_point_down_the_layers():
    from pathlib import Path

    layer = {m: i for i, mods in enumerate(LAYERS) for m in mods}
    root = Path(rag.__file__).parent
    for path in root.rglob("*.py"):
        module = ".".join(path.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__")
        assert module in layer, f"{module} has no layer in LAYERS: place it where the data flow puts it"
        for imported in _imports(path):
            if imported.split(".")[0] != "rag":
                continue
            imported = imported if imported in layer else "rag"  # a public name of the package, not a module
            assert layer[imported] < layer[module], (
                f"{module} (layer {layer[module]}) imports {imported} (layer {layer[imported]})"
            )


def test_the_tree_is_linted_and_formatted_at_120_columns():
    """`make lint` as a test, so CI holds it: ruff's checks (long lines included) and its formatting."""
    from pathlib import Path

    root = Path(rag.__file__).parents[1]
    ruff = Path(sys.executable).with_name("ruff")
    for args in (["check", "."], ["format", "--check", "."]):
        proc = subprocess.run([str(ruff), *args], cwd=root, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
