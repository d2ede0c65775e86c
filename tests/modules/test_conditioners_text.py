"""Text conditioners: T5Conditioner against the official goldens (t5_conditioner.pt), and the LUT conditioner."""
import hashlib
import random

import pytest
import torch

from audiocraft.modules.conditioners import LUTConditioner, T5Conditioner, WhiteSpaceTokenizer, hash_trick

from ._conditioner_helpers import MELODY, SMALL, conditioner_state


@pytest.fixture(scope="module")
def t5_golden(golden):
    return golden("t5_conditioner")


@pytest.fixture(scope="module")
def t5_conditioner():
    return T5Conditioner("t5-base", output_dim=64, finetune=False, device="cpu").eval()


def test_t5_is_not_part_of_the_state_dict(t5_conditioner):
    assert list(t5_conditioner.state_dict()) == ["output_proj.weight", "output_proj.bias"]
    assert [name for name, _ in t5_conditioner.named_parameters()] == ["output_proj.weight", "output_proj.bias"]
    assert t5_conditioner.dim == 768 and not t5_conditioner.t5.training
    assert not any(p.requires_grad for p in t5_conditioner.t5.parameters())
    t5_conditioner.train()
    assert not t5_conditioner.t5.training  # .train() does not reach the frozen encoder
    t5_conditioner.eval()


def test_t5_tokenize_matches_golden(t5_conditioner, t5_golden):
    tokens = t5_conditioner.tokenize(t5_golden["meta"]["texts"])
    assert set(tokens) == {"input_ids", "attention_mask"}
    assert torch.equal(tokens["input_ids"], t5_golden["input_ids"])
    assert torch.equal(tokens["attention_mask"], t5_golden["attention_mask"])
    assert tokens["input_ids"].dtype == torch.int64 and tokens["attention_mask"].dtype == torch.int64


def test_t5_tokenize_none_and_empty_rows_are_masked(t5_conditioner, t5_golden):
    text = t5_golden["meta"]["texts"][0]
    tokens = t5_conditioner.tokenize([text, None, ""])
    assert torch.equal(tokens["input_ids"][0], t5_golden["input_ids"][0])
    assert tokens["input_ids"][1].tolist() == [1] + [0] * 14  # '' -> '</s>' then padding
    assert tokens["attention_mask"][1:].sum() == 0
    with torch.no_grad():
        embeds, mask = t5_conditioner(tokens)
    assert embeds[1:].abs().sum() == 0 and torch.equal(mask, tokens["attention_mask"])


@pytest.mark.parametrize("repo,key", [(SMALL, "small"), (MELODY, "melody")])
def test_t5_embeds_match_golden(t5_conditioner, t5_golden, repo, key):
    t5_conditioner.load_state_dict(conditioner_state(repo, "description"))
    tokens = t5_conditioner.tokenize(t5_golden["meta"]["texts"])
    with torch.no_grad():
        hidden = t5_conditioner.t5(**tokens).last_hidden_state
        embeds, mask = t5_conditioner(tokens)
    assert (hidden - t5_golden["t5_last_hidden_state"]).abs().max() <= 1e-5
    assert embeds.shape == (2, 15, 64)
    assert (embeds - t5_golden[f"{key}_embeds"]).abs().max() <= 1e-5
    assert torch.equal(mask, t5_golden[f"{key}_mask"])
    assert embeds[1, 13:].abs().sum() == 0  # padding positions are zeroed


def test_t5_skips_rows_without_tokens(t5_conditioner, t5_golden, monkeypatch):
    """The unconditional rows of classifier-free guidance (None / '') are not encoded: zeros, as if they were."""
    t5_conditioner.load_state_dict(conditioner_state(SMALL, "description"))
    texts = t5_golden["meta"]["texts"]
    tokens = t5_conditioner.tokenize([texts[0], None, texts[1], ""])
    seen = []
    encoder = t5_conditioner.t5
    monkeypatch.setitem(t5_conditioner.__dict__, "t5", lambda **kw: seen.append(kw["input_ids"].shape) or encoder(**kw))
    with torch.no_grad():
        embeds, mask = t5_conditioner(tokens)
    assert seen == [(2, 15)]  # only the two texts went through T5
    assert torch.equal(mask, tokens["attention_mask"]) and embeds.shape == (4, 15, 64)
    assert embeds[[1, 3]].abs().sum() == 0
    assert (embeds[[0, 2]] - t5_golden["small_embeds"]).abs().max() <= 1e-5
    seen.clear()
    with torch.no_grad():
        empty, _ = t5_conditioner(t5_conditioner.tokenize([None, ""]))  # nothing to encode: the plain path
    assert seen == [(2, 1)] and empty.abs().sum() == 0


def test_t5_word_dropout_only_in_training(t5_conditioner):
    text = "80s pop track with bassy drums and synth"
    conditioner = T5Conditioner("t5-base", output_dim=8, finetune=False, device="cpu", word_dropout=0.5).eval()
    full = conditioner.tokenize([text])["input_ids"]
    random.seed(0)
    kept = [w for w in text.split(" ") if random.random() >= 0.5]
    assert 0 < len(kept) < 8
    random.seed(0)
    conditioner.train()
    dropped = conditioner.tokenize([text])["input_ids"]
    assert torch.equal(dropped, conditioner.t5_tokenizer([" ".join(kept)], return_tensors="pt")["input_ids"])
    assert dropped.shape[1] < full.shape[1]
    conditioner.eval()
    assert torch.equal(conditioner.tokenize([text])["input_ids"], full)


def test_t5_normalize_text_warns_and_normalizes():
    with pytest.warns(UserWarning, match="light normaliser"):
        conditioner = T5Conditioner("t5-base", output_dim=8, finetune=False, device="cpu", normalize_text=True)
    tokens = conditioner.tokenize(["The Drums, and THE bass!"])
    assert torch.equal(tokens["input_ids"], conditioner.t5_tokenizer(["drums bass"], return_tensors="pt")["input_ids"])


def test_t5_finetune_registers_the_encoder():
    conditioner = T5Conditioner("t5-base", output_dim=8, finetune=True, device="cpu")
    assert any(k.startswith("t5.") for k in conditioner.state_dict())
    assert conditioner.t5.training


def test_t5_bad_arguments(t5_conditioner):
    with pytest.raises(ValueError, match="Unknown T5 model name 't5-huge'.*t5-small"):
        T5Conditioner("t5-huge", output_dim=8, finetune=False, device="cpu")
    with pytest.raises(ValueError, match=r"word_dropout must be in \[0, 1\], got 2"):
        T5Conditioner("t5-base", output_dim=8, finetune=False, device="cpu", word_dropout=2)
    with pytest.raises(ValueError, match="autocast_dtype must name a torch dtype.*'float17'"):
        T5Conditioner("t5-base", output_dim=8, finetune=False, device="cuda", autocast_dtype="float17")
    with pytest.raises(TypeError, match="x must be a list of str or None.*'a text'"):
        t5_conditioner.tokenize("a text")
    with pytest.raises(TypeError, match=r"x\[1\] must be a str or None, got 3 \(int\)"):
        t5_conditioner.tokenize(["a", 3])


# ------------------------------------------------------------------------------------------------ LUT
def test_t5_tokenizer_names_the_missing_sentencepiece_packages(hf_cache_dir):
    """Without sentencepiece and protobuf, T5's tokenizer cannot be read (transformers 5.x then reports a missing
    tiktoken): the error names the packages to install. Run in a fresh process, where the imports are blocked."""
    import os
    import subprocess
    import sys
    code = ("import sys\n"
            "sys.modules['sentencepiece'] = sys.modules['google.protobuf'] = None\n"
            "from audiocraft.modules.conditioners import T5Conditioner\n"
            "T5Conditioner('t5-base', output_dim=64, finetune=False, device='cpu')\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HUB_CACHE=str(hf_cache_dir))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode != 0
    assert "ImportError: cannot load the tokenizer of 't5-base': T5's SentencePiece tokenizer needs sentencepiece " \
           "protobuf (pip install sentencepiece protobuf)" in result.stderr, result.stderr[-2000:]


def test_whitespace_tokenizer():
    tokenizer = WhiteSpaceTokenizer(n_bins=50, pad_idx=0)
    tokens, mask = tokenizer(["The drums, and bass!", None, "Piano"])
    ids = [hash_trick(w, 50) for w in ("drums", "bass")]
    assert tokens.tolist() == [ids, [0, 0], [hash_trick("piano", 50), 0]]
    assert mask.tolist() == [[1, 1], [0, 0], [1, 0]]
    assert hash_trick("piano", 50) == int(hashlib.sha256(b"piano").hexdigest(), 16) % 50
    only_none, none_mask = tokenizer([None])
    assert only_none.shape == (1, 1) and none_mask.tolist() == [[0]]


def test_lut_conditioner_forward():
    torch.manual_seed(0)
    lut = LUTConditioner(n_bins=16, dim=4, output_dim=3, tokenizer="whitespace")
    tokens, mask = lut.tokenize(["rock guitar", None])
    embeds, out_mask = lut((tokens, mask))
    assert embeds.shape == (2, 2, 3) and torch.equal(out_mask, mask)
    expected = lut.output_proj(lut.embed.weight[tokens[0].long()])
    assert torch.allclose(embeds[0], expected) and embeds[1].abs().sum() == 0
    with pytest.raises(ValueError, match=r"tokenizer must be one of \['whitespace', 'noun_split'\], got 'spacy'"):
        LUTConditioner(n_bins=16, dim=4, output_dim=3, tokenizer="spacy")
    with pytest.warns(UserWarning, match="noun_split"):
        LUTConditioner(n_bins=16, dim=4, output_dim=3, tokenizer="noun_split")
