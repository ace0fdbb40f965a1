"""Tokenizer, vocabulary, encoding, and the IMDB-folder loader on a generated aclImdb layout."""
import pytest
import torch

from qlstm_edge.text import (PAD_ID, UNK_ID, DatasetLayoutError, Vocabulary, encode_documents, imdb_tensors,
                             load_imdb, tokenize)

REVIEWS = {
    ("train", "pos"): ["A great movie!<br /><br />Loved it.", "Wonderful, wonderful acting.", "Great fun"],
    ("train", "neg"): ["Awful. I didn't like it?", "Boring and awful plot"],
    ("test", "pos"): ["great"],
    ("test", "neg"): ["awful zebra"],
}


def make_imdb(root, reviews=REVIEWS):
    for (split, label), texts in reviews.items():
        d = root / "aclImdb" / split / label
        d.mkdir(parents=True, exist_ok=True)
        for k, text in enumerate(texts):
            (d / f"{k}_{7 if label == 'pos' else 2}.txt").write_text(text, encoding="utf-8")
    return root / "aclImdb"


def test_tokenize():
    assert tokenize("A great movie!<br /><br />Loved it.") == ["a", "great", "movie", "!", "loved", "it"]
    assert tokenize("I didn't like it?  Ten/10, 3D") == ["i", "didn't", "like", "it", "?", "ten", "10", "3d"]
    assert tokenize("") == []


def test_vocabulary_order_limit_and_unknowns():
    docs = [["b", "a", "c", "a"], ["c", "a", "d"]]
    v = Vocabulary.build(docs, max_size=4)
    assert v.tokens == ("<pad>", "<unk>", "a", "c")  # a: 3, c: 2, b and d: 1 (cut by the limit)
    assert len(v) == 4 and v.encode(["a", "d", "c"]) == [2, UNK_ID, 3] and v.id("<pad>") == PAD_ID
    assert Vocabulary.build(docs, max_size=100).tokens == ("<pad>", "<unk>", "a", "c", "b", "d")  # ties: a-z
    assert Vocabulary.build(docs, max_size=100, min_freq=2).tokens == ("<pad>", "<unk>", "a", "c")
    with pytest.raises(ValueError, match="max_size must be an integer >= 3"):
        Vocabulary.build(docs, max_size=2)
    with pytest.raises(TypeError, match="tokenized documents"):
        Vocabulary.build(["a text"], max_size=10)


def test_vocabulary_save_load(tmp_path):
    v = Vocabulary.build([["x", "y", "x"]], max_size=10)
    assert Vocabulary.load(v.save(tmp_path / "v.json")) == v
    (tmp_path / "bad.json").write_text('{"tokens": ["a"]}')
    with pytest.raises(ValueError, match="not a qlstm-edge vocabulary"):
        Vocabulary.load(tmp_path / "bad.json")


def test_encode_truncates_and_pads_left():
    v = Vocabulary.build([["a", "b", "c"]], max_size=10)
    a, b, c = v.encode(["a", "b", "c"])
    x = encode_documents([["a", "b", "c"], ["c"], [], ["a", "zzz"]], v, length=2)
    assert x.dtype == torch.int64
    assert x.tolist() == [[a, b], [PAD_ID, c], [PAD_ID, PAD_ID], [a, UNK_ID]]
    assert encode_documents([["a", "b", "c"]], v, length=2, keep="tail").tolist() == [[b, c]]
    with pytest.raises(ValueError, match="length must be a positive integer"):
        encode_documents([["a"]], v, length=0)


def test_load_imdb_labels_and_order(tmp_path):
    root = make_imdb(tmp_path)
    texts, labels = load_imdb(root, "train")
    assert labels == [0, 0, 1, 1, 1]
    assert texts[0] == "Awful. I didn't like it?" and texts[2].startswith("A great movie")
    assert load_imdb(tmp_path, "test") == (["awful zebra", "great"], [0, 1])  # the parent folder works too
    assert load_imdb(root, "train", limit=1)[1] == [0, 1]


def test_imdb_tensors_vocabulary_from_train_only(tmp_path):
    x, y, xt, yt, vocab = imdb_tensors(make_imdb(tmp_path), vocab_size=5, length=4)
    # train counts: awful 2, great 2, wonderful 2, it 2, ... -> the 3 most frequent, ties alphabetical
    assert vocab.tokens == ("<pad>", "<unk>", "awful", "great", "it")
    assert x.shape == (5, 4) and y.tolist() == [0, 0, 1, 1, 1] and yt.tolist() == [0, 1]
    assert xt.tolist() == [[PAD_ID, PAD_ID, vocab.id("awful"), UNK_ID], [PAD_ID, PAD_ID, PAD_ID, vocab.id("great")]]


def test_imdb_layout_errors(tmp_path):
    with pytest.raises(DatasetLayoutError, match="no such folder"):
        load_imdb(tmp_path / "missing")
    root = make_imdb(tmp_path / "a")
    with pytest.raises(DatasetLayoutError, match=r"no test/ folder"):
        load_imdb(make_imdb(tmp_path / "b", {("train", "pos"): ["x"], ("train", "neg"): ["y"]}), "test")
    with pytest.raises(DatasetLayoutError, match=r"no neg/ folder"):
        load_imdb(make_imdb(tmp_path / "c", {("train", "pos"): ["x"]}), "train")
    (root / "test" / "pos" / "0_7.txt").unlink()
    with pytest.raises(DatasetLayoutError, match=r"pos: no \.txt review files"):
        load_imdb(root, "test")
    (root / "train" / "neg" / "9_1.txt").write_bytes(b"caf\xe9 latin-1")
    with pytest.raises(DatasetLayoutError, match=r"9_1\.txt: not UTF-8 text \(byte 3"):
        load_imdb(root, "train")
    with pytest.raises(ValueError, match="split must be one of"):
        load_imdb(root, "valid")
