import json
import subprocess
import sys

import rag


def test_public_api_is_small_and_stable():
    assert sorted(rag.__all__) == ["Answer", "Engine", "Hit", "IngestReport", "QueryParams", "RagError", "Settings", "load_settings"]
    for name in rag.__all__:
        assert getattr(rag, name) is not None


def test_import_rag_is_cheap():
    """Importing the library loads none of the heavy packages: they load where they are used."""
    code = "import sys, json, rag; print(json.dumps(sorted(m for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(json.loads(out))
    heavy = {"torch", "sentence_transformers", "transformers", "gradio", "xllamacpp", "chromadb", "langchain_chroma", "tiktoken"}
    assert not heavy & loaded, heavy & loaded


def test_library_never_imports_ui_or_evals():
    from pathlib import Path

    for path in Path(rag.__file__).parent.rglob("*.py"):
        if path.name == "cli.py":  # the command-line shell starts the web shell; the library never does
            continue
        text = path.read_text()
        for banned in ("import gradio", "from gradio", "from ui", "import ui", "from evals", "import evals"):
            assert banned not in text, f"{path} contains {banned!r}"
