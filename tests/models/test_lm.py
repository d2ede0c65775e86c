import json

import pytest
import torch
from omegaconf import OmegaConf

from audiocraft.models.builders import get_codebooks_pattern_provider, get_debug_lm_model, get_lm_model
from audiocraft.models.lm import LMModel, LMOutput, ScaledEmbedding
from audiocraft.modules.codebooks_patterns import DelayedPatternProvider, MusicLMPattern, UnrolledPatternProvider
from audiocraft.modules.conditioners import ConditionFuser, ConditioningAttributes, ConditioningProvider
from tests.conftest import GOLDEN_DIR, HF_CACHE_DIR

TOL = 1e-4


def _package(repo: str) -> dict:
    folder = HF_CACHE_DIR / f"models--facebook--{repo}"
    commit = (folder / "refs" / "main").read_text().strip()
    return torch.load(folder / "snapshots" / commit / "state_dict.bin", map_location="cpu", weights_only=True)


def _load(repo: str) -> LMModel:
    pkg = _package(repo)
    cfg = OmegaConf.create(pkg["xp.cfg"])
    cfg.device, cfg.dtype = "cpu", "float32"
    lm = get_lm_model(cfg)
    lm.load_state_dict(pkg["best_state"], strict=True)
    return lm.eval()


@pytest.fixture(scope="module")
def small() -> LMModel:
    return _load("musicgen-small")


@pytest.fixture(scope="module")
def melody() -> LMModel:
    return _load("musicgen-melody")


def _attrs(texts):
    return [ConditioningAttributes(text={"description": t}) for t in texts]


def _assert_logits(out: LMOutput, g: dict) -> None:
    assert torch.equal(out.mask, g["logits_mask"])
    assert torch.equal(out.logits.isnan(), g["logits"].isnan())
    valid = ~g["logits"].isnan()
    assert (out.logits[valid] - g["logits"][valid]).abs().max() < TOL


# ------------------------------------------------------------------------------------------------ checkpoints
@pytest.mark.parametrize("repo", ["musicgen-small", "musicgen-melody"])
def test_state_dict_names_shapes_dtypes(repo, request):
    lm = request.getfixturevalue(repo.split("-")[1])
    expected = json.loads((GOLDEN_DIR / "state_dict_shapes.json").read_text())[f"{repo}.lm"]
    got = [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in lm.state_dict().items()]
    assert sorted(got) == sorted(expected)


def test_attributes_from_config(small, melody):
    assert (small.n_q, small.card, small.dim, small.special_token_id, small.num_codebooks) == (4, 2048, 64, 2048, 4)
    assert small.cfg_coef == 3.0 and small.two_step_cfg is False
    assert all(isinstance(e, ScaledEmbedding) and e.num_embeddings == 2049 for e in small.emb)
    assert small.out_norm is not None and small.transformer.layers[0].cross_attention is not None
    assert melody.transformer.layers[0].cross_attention is None
    assert melody.fuser.fuse2cond["prepend"] == ["self_wav", "description"]
    assert isinstance(small.pattern_provider, DelayedPatternProvider) and small.pattern_provider.delays == [0, 1, 2, 3]


# ------------------------------------------------------------------------------------------------ goldens
def test_compute_predictions_small_with_condition_tensors(small, golden):
    g = golden("lm_forward")
    ct = {"description": (g["cond_description_embeds"], g["cond_description_mask"])}
    with torch.no_grad():
        out = small.compute_predictions(g["codes"], [], condition_tensors=ct)
    _assert_logits(out, g)


def test_compute_predictions_small_through_t5(small, golden):
    g = golden("lm_forward")
    with torch.no_grad():
        out = small.compute_predictions(g["codes"], _attrs(g["meta"]["texts"]))
    _assert_logits(out, g)


def test_compute_predictions_melody_with_condition_tensors(melody, golden):
    g = golden("lm_forward_melody")
    ct = {"description": (g["cond_description_embeds"], g["cond_description_mask"]),
          "self_wav": (g["cond_self_wav_embeds"], g["cond_self_wav_mask"])}
    with torch.no_grad():
        out = melody.compute_predictions(g["codes"], [], condition_tensors=ct)
    _assert_logits(out, g)


@pytest.mark.parametrize("name", ["generate_greedy", "generate_sampling_topk", "generate_sampling_topp",
                                  "generate_two_step_cfg", "generate_unconditional"])
def test_generate_matches_golden_tokens(small, golden, name):
    g = golden(name)
    p, meta = g["meta"]["set_generation_params"], g["meta"]
    texts = meta.get("texts") or [None] * g["tokens"].shape[0]
    # Official two-step CFG used lm.cfg_coef whatever was asked; this package honours cfg_coef, so pass it.
    coef = meta["lm.cfg_coef"] if p["two_step_cfg"] else p["cfg_coef"]
    if meta["torch.manual_seed_right_before_call"] is not None:
        torch.manual_seed(meta["torch.manual_seed_right_before_call"])
    tokens = small.generate(None, _attrs(texts), max_gen_len=g["tokens"].shape[-1], use_sampling=p["use_sampling"],
                            temp=p["temperature"], top_k=p["top_k"], top_p=p["top_p"], cfg_coef=coef,
                            two_step_cfg=p["two_step_cfg"])
    assert torch.equal(tokens, g["tokens"])


def test_generate_continuation_keeps_prompt(small, golden):
    g = golden("generate_continuation")
    tokens = small.generate(g["prompt_tokens"], _attrs(g["meta"]["descriptions"]), max_gen_len=50,
                            use_sampling=False, cfg_coef=3.0)
    assert torch.equal(tokens, g["tokens"])


def test_built_on_meta_and_assigned_matches_the_goldens(golden, monkeypatch):
    """The fast way to load: the LM body built on the meta device (no random init), the checkpoint tensors
    assigned. The conditioners (T5) are built for real before, as get_lm_model does."""
    import audiocraft.models.builders as build
    from audiocraft.utils.checkpoint_io import load_state_dict_checked

    def on_meta(*args, **kwargs):
        with torch.device("meta"):
            return LMModel(*args, **{**kwargs, "device": "meta"})
    monkeypatch.setattr(build, "LMModel", on_meta)
    monkeypatch.setattr(LMModel, "to", lambda self, *args, **kwargs: self)  # get_lm_model's final .to(device)
    pkg = _package("musicgen-small")
    cfg = OmegaConf.create(pkg["xp.cfg"])
    cfg.device, cfg.dtype = "cpu", "float32"
    lm = get_lm_model(cfg)
    monkeypatch.undo()
    t5_proj = lm.condition_provider.conditioners["description"].output_proj
    assert lm.linears[0].weight.is_meta and not t5_proj.weight.is_meta
    load_state_dict_checked(lm, pkg["best_state"], "small", assign=True)
    lm.eval()
    assert not any(t.is_meta for t in list(lm.parameters()) + list(lm.buffers()))
    g = golden("generate_greedy")
    p = g["meta"]["set_generation_params"]
    tokens = lm.generate(None, _attrs(g["meta"]["texts"]), max_gen_len=g["tokens"].shape[-1], use_sampling=False,
                         cfg_coef=p["cfg_coef"])
    assert torch.equal(tokens, g["tokens"])


# ------------------------------------------------------------------------------------------------ debug LM
@pytest.fixture(scope="module")
def debug_lm() -> LMModel:
    torch.manual_seed(0)
    return get_debug_lm_model()


def _texts(n):
    return _attrs(["a calm piano", "drums and bass heavy synth", "rock"][:n])


def test_generate_shapes_prompt_and_remove_prompts(debug_lm):
    out = debug_lm.generate(None, _texts(2), max_gen_len=7, use_sampling=True, top_k=10)
    assert out.shape == (2, 4, 7) and out.dtype == torch.long
    assert 0 <= int(out.min()) and int(out.max()) < debug_lm.card
    prompt = torch.randint(0, 400, (2, 4, 3))
    kept = debug_lm.generate(prompt, _texts(2), max_gen_len=7, use_sampling=False)
    assert kept.shape == (2, 4, 7) and torch.equal(kept[..., :3], prompt)
    removed = debug_lm.generate(prompt, _texts(2), max_gen_len=7, use_sampling=False, remove_prompts=True)
    assert torch.equal(removed, kept[..., 3:])
    assert debug_lm.generate(num_samples=3, max_gen_len=2, conditions=_texts(3)).shape == (3, 4, 2)


def test_callback_semantics(debug_lm):
    calls = []
    debug_lm.generate(None, _texts(1), max_gen_len=6, callback=lambda *a: calls.append(a))
    # delay pattern: 1 + 6 + 3 steps, generation starts at step 1 -> 9 steps
    assert calls == [(i, 9) for i in range(1, 10)]
    calls.clear()
    debug_lm.generate(torch.zeros(1, 4, 2, dtype=torch.long), _texts(1), max_gen_len=6,
                      callback=lambda *a: calls.append(a))
    assert calls == [(i, 7) for i in range(1, 8)]  # the prompt is fed in the first step (step 3 is generated)


def test_streaming_state_reset_after_callback_error(debug_lm):
    def boom(done, total):
        if done == 3:
            raise KeyboardInterrupt("stop")
    with pytest.raises(KeyboardInterrupt):
        debug_lm.generate(None, _texts(2), max_gen_len=8, callback=boom)
    for _, module in debug_lm._streaming_modules():
        assert not module.is_streaming and module._streaming_state is None
    assert debug_lm.generate(None, _texts(1), max_gen_len=3).shape == (1, 4, 3)


@pytest.mark.parametrize("two_step", [False, True])
def test_generate_allocates_each_kv_cache_once(debug_lm, monkeypatch, two_step):
    from audiocraft.modules.transformer import StreamingMultiheadAttention

    made = []
    original = StreamingMultiheadAttention._new_cache

    def spy(self, batch_size, capacity, device, dtype):
        made.append((batch_size, capacity))
        return original(self, batch_size, capacity, device, dtype)
    monkeypatch.setattr(StreamingMultiheadAttention, "_new_cache", spy)
    debug_lm.generate(None, _texts(2), max_gen_len=9, two_step_cfg=two_step)
    layers = len(debug_lm.transformer.layers)
    # 9 + 3 delays + 1 initial step; one cache per layer (per branch with two-step), never regrown
    expected = [(2, 13)] * (2 * layers) if two_step else [(4, 13)] * layers
    assert made == expected


def test_greedy_generation_agrees_with_full_forward(debug_lm):
    """Streaming decode (KV cache, cross K/V projected once) == a full forward over the final sequence."""
    conditions = _texts(2)
    out = debug_lm.generate(None, conditions, max_gen_len=6, use_sampling=False, cfg_coef=2.5)
    pattern = debug_lm.pattern_provider.get_pattern(6)
    sequence, _, mask = pattern.build_pattern_sequence(out, debug_lm.special_token_id)
    null = debug_lm._cfg_conditions(conditions, two_step=False)
    with torch.no_grad():
        logits = debug_lm(torch.cat([sequence, sequence]), [], condition_tensors=null)  # [2B, K, S, card]
    cond, uncond = logits.split(2)
    guided = uncond + (cond - uncond) * 2.5
    predicted = guided.argmax(-1)[..., :-1]  # position s predicts step s + 1
    target = sequence[..., 1:]
    valid = mask[:, 1:].expand_as(target)
    assert torch.equal(predicted[valid], target[valid])


def test_two_step_cfg_equals_one_step_and_honours_cfg_coef(debug_lm):
    """The null branch is all zeros (LUT nullified): its cross-attention output does not depend on padding."""
    for coef in (3.0, 5.0):
        one = debug_lm.generate(None, _texts(3), max_gen_len=8, use_sampling=False, cfg_coef=coef)
        two = debug_lm.generate(None, _texts(3), max_gen_len=8, use_sampling=False, cfg_coef=coef,
                                two_step_cfg=True)
        assert torch.equal(one, two)
    default = debug_lm.generate(None, _texts(3), max_gen_len=8, use_sampling=False, two_step_cfg=True)
    assert torch.equal(default, debug_lm.generate(None, _texts(3), max_gen_len=8, use_sampling=False,
                                                  cfg_coef=debug_lm.cfg_coef))


def test_generator_controls_sampling(debug_lm):
    def run(seed):
        return debug_lm.generate(None, _texts(2), max_gen_len=6, top_k=50,
                                 generator=torch.Generator().manual_seed(seed))
    state = torch.get_rng_state()
    a, b = run(1), run(1)
    assert torch.equal(a, b)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG was not used
    assert not torch.equal(a, run(2))


def test_streaming_forward_with_prefix_and_cross_equals_full():
    torch.manual_seed(0)
    fuser = ConditionFuser({"prepend": ["p", "q"], "cross": ["c"], "sum": [], "input_interpolate": []})
    lm = LMModel(DelayedPatternProvider(3), ConditioningProvider({}), fuser, n_q=3, card=20, dim=16, num_heads=2,
                 num_layers=2, causal=True, cross_attention=True, norm_first=True, weight_init="gaussian",
                 depthwise_init="current", positional_embedding="sin_rope").eval()
    ct = {"q": (torch.randn(2, 2, 16), torch.ones(2, 2)), "p": (torch.randn(2, 3, 16), torch.ones(2, 3)),
          "c": (torch.randn(2, 4, 16), torch.ones(2, 4))}
    seq = torch.randint(0, 21, (2, 3, 9))
    with torch.no_grad():
        full = lm(seq, [], condition_tensors=ct)
        steps = []
        with lm.streaming():
            for start, end in [(0, 3), (3, 4), (4, 6), (6, 9)]:
                steps.append(lm(seq[..., start:end], [], condition_tensors=ct))
    assert full.shape == (2, 3, 9, 20)
    torch.testing.assert_close(torch.cat(steps, dim=2), full, atol=1e-5, rtol=1e-5)


def test_weight_init_schemes():
    def make(**kwargs):
        torch.manual_seed(0)
        return LMModel(DelayedPatternProvider(2), ConditioningProvider({}), ConditionFuser({}), n_q=2, card=10,
                       dim=32, num_heads=2, num_layers=3, bias_ff=True, **kwargs)
    lm = make(weight_init="gaussian", depthwise_init="current", zero_bias_init=True)
    for depth, layer in enumerate(lm.transformer.layers, start=1):
        std = 1 / 32 ** 0.5 / (2 * depth) ** 0.5
        assert layer.linear1.weight.abs().max() <= 3 * std + 1e-7
        assert layer.linear1.bias.abs().sum() == 0
    assert lm.emb[0].weight.abs().max() <= 3 / 32 ** 0.5 + 1e-7
    uniform = make(weight_init="uniform", depthwise_init="global")
    bound = 3 ** 0.5 / 32 ** 0.5 / 6 ** 0.5
    assert all(layer.linear2.weight.abs().max() <= 3 ** 0.5 / 128 ** 0.5 / 6 ** 0.5 + 1e-7
               for layer in uniform.transformer.layers)
    assert uniform.transformer.layers[0].linear1.weight.abs().max() <= bound + 1e-7
    with pytest.raises(ValueError, match="Unknown weight_init 'xavier'"):
        make(weight_init="xavier")
    with pytest.raises(ValueError, match="need a weight_init"):
        make(depthwise_init="current")
    with pytest.raises(ValueError, match="Unknown depthwise_init 'local'"):
        make(weight_init="gaussian", depthwise_init="local")
    assert make(norm_first=False).out_norm is None


def test_errors(debug_lm):
    with pytest.raises(ValueError, match="Inconsistent batch sizes"):
        debug_lm.generate(torch.zeros(2, 4, 1, dtype=torch.long), _texts(3))
    with pytest.raises(ValueError, match="shorter than max_gen_len=4"):
        debug_lm.generate(torch.zeros(1, 4, 4, dtype=torch.long), _texts(1), max_gen_len=4)
    with pytest.raises(ValueError, match=r"prompt must be \[B, 4, T\]"):
        debug_lm.generate(torch.zeros(1, 3, 1, dtype=torch.long), _texts(1))
    seq = torch.zeros(1, 4, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="stage=0"):
        debug_lm(seq, _texts(1), stage=0)
    with pytest.raises(ValueError, match="either conditions or condition_tensors"):
        debug_lm(seq, _texts(1), condition_tensors={})
    with pytest.raises(ValueError, match="The sequence has 3 codebooks, the model 4"):
        debug_lm(seq[:, :3], _texts(1))
    debug_lm.train()
    try:
        with pytest.raises(RuntimeError, match="needs eval mode"):
            debug_lm.generate(None, _texts(1))
    finally:
        debug_lm.eval()


# ------------------------------------------------------------------------------------------------ builders
def test_builder_errors_and_patterns():
    cfg = OmegaConf.create(_package("musicgen-small")["xp.cfg"])
    cfg.device = "cpu"
    bad = cfg.copy()
    bad.lm_model = "transformer_lm_other"
    with pytest.raises(ValueError, match="Unknown lm_model 'transformer_lm_other'"):
        get_lm_model(bad)
    bad = cfg.copy()
    bad.transformer_lm.flash = True
    with pytest.raises(ValueError, match=r"Unknown transformer_lm keys \['flash'\]"):
        get_lm_model(bad)
    with pytest.raises(ValueError, match="Unknown codebooks pattern 'spiral'"):
        get_codebooks_pattern_provider(4, {"modeling": "spiral"})
    with pytest.raises(ValueError, match="Invalid arguments"):
        get_codebooks_pattern_provider(4, {"modeling": "delay", "delay": {"lag": 1}})
    pattern_cfg = cfg.codebooks_pattern
    assert get_codebooks_pattern_provider(4, pattern_cfg).delays == [0, 1, 2, 3]
    pattern_cfg.modeling = "unroll"
    assert isinstance(get_codebooks_pattern_provider(4, pattern_cfg), UnrolledPatternProvider)
    assert isinstance(get_codebooks_pattern_provider(4, {"modeling": "musiclm"}), MusicLMPattern)
