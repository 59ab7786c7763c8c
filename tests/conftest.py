import pytest


@pytest.fixture(autouse=True)
def _isolated_results_store(tmp_path_factory, monkeypatch):
    # 'trainlab run' and 'trainlab sweep' record into a results store (default runs/trainlab.sqlite
    # under the working folder); tests keep theirs in a temporary folder
    monkeypatch.setenv("TRAINLAB_STORE", str(tmp_path_factory.mktemp("store") / "trainlab.sqlite"))
