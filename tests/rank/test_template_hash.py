"""The trained ranker's template hash covers how untrusted item text is quoted."""

from llmrec.rank import model


def test_template_hash_changes_with_the_quoting(monkeypatch):
    before = model.template_hash()
    assert before == model.template_hash() and len(before) == 16
    monkeypatch.setattr(model, "quote", lambda text, max_chars=200: '"' + str(text)[:max_chars] + '"')
    assert model.template_hash() != before
