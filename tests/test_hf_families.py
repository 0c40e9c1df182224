"""``hf:config.json`` for families a sweep of transformers' model types found failing on netscope's own default
input. Oracles: the transformers model built from the same config by transformers itself, run on the inputs a
tokenizer gives (int64 ids, an int64 all-ones ``attention_mask``), its ``parameters()``, and torch's own formulas
(``flop_counter.flop_registry``) on that forward."""

from __future__ import annotations

import pytest
import torch

import netscope
from netscope.cli import main
from netscope.models.specs import resolve_model
from test_hf_multimodal_inputs import _TorchFormulas

transformers = pytest.importorskip("transformers")


def _counts_as_torch_does(oracle, args, kwargs):
    """transformers' own model runs on netscope's default input, and netscope's summary of it has its parameters and
    every multiply-add torch's flop_counter counts, with no operator left uncounted."""
    counter = _TorchFormulas()
    with torch.no_grad(), counter:
        oracle(*args, **kwargs)  # transformers' own model accepts the default input
    report = netscope.summary(oracle, input_data=(tuple(args), kwargs), audit_names=False)
    assert report.totals.total_params == sum(p.numel() for p in oracle.parameters())
    assert not report.partial, report.uncounted_ops()
    assert report.totals.total_macs == counter.flops // 2 > 0


def test_xlnet_default_mask_is_what_a_tokenizer_gives(tmp_path, capsys):
    """XLNet computes ``1.0 - attention_mask``: netscope's bool mask made its forward raise (exit 3) on inputs
    netscope built itself. The default mask is now int64 ones, as tokenizers return it."""
    config = transformers.XLNetConfig(vocab_size=100, d_model=32, n_layer=2, n_head=2, d_head=16, d_inner=64,
                                      architectures=["XLNetModel"])
    config.save_pretrained(tmp_path)
    spec = f"hf:{tmp_path / 'config.json'}"
    assert main(["summary", spec, "-q"]) == 0, capsys.readouterr().err
    args, kwargs = resolve_model(spec).inputs.build("cpu")
    mask = kwargs["attention_mask"]
    assert mask.dtype == torch.int64 and bool((mask == 1).all()) and mask.shape == args[0].shape
    torch.manual_seed(0)
    oracle = transformers.XLNetModel(config).eval()
    ids = torch.randint(0, config.vocab_size, tuple(args[0].shape))
    counter = _TorchFormulas()
    with torch.no_grad(), counter:
        oracle(ids, attention_mask=torch.ones_like(ids))
    report = netscope.summary(oracle, input_data=(tuple(args), kwargs), audit_names=False)
    assert not report.partial, report.uncounted_ops()
    assert report.totals.total_macs == counter.flops // 2 > 0
    assert report.totals.total_params == sum(p.numel() for p in oracle.parameters())


def _audio_configs():
    moonshine = transformers.MoonshineConfig(  # an audio encoder-decoder: raw audio in, decoder token ids
        vocab_size=100, hidden_size=32, intermediate_size=64, encoder_num_hidden_layers=1,
        decoder_num_hidden_layers=1, encoder_num_attention_heads=2, decoder_num_attention_heads=2,
        max_position_embeddings=40, architectures=["MoonshineModel"])
    encodec = transformers.EncodecConfig(  # a codec: (batch, audio_channels, samples)
        audio_channels=2, hidden_size=16, num_filters=4, upsampling_ratios=[4, 2], codebook_size=32,
        codebook_dim=16, num_lstm_layers=1, architectures=["EncodecModel"])
    ast = transformers.ASTConfig(  # a spectrogram classifier: (batch, max_length frames, num_mel_bins)
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, max_length=48,
        num_mel_bins=32, patch_size=16, frequency_stride=10, time_stride=10, architectures=["ASTModel"])
    dac = transformers.DacConfig(  # a codec whose config names no channels: mono (batch, 1, samples)
        encoder_hidden_size=8, downsampling_ratios=[2, 4], decoder_hidden_size=32, n_codebooks=2, codebook_size=16,
        codebook_dim=4, hidden_size=32, upsampling_ratios=[4, 2], architectures=["DacModel"])
    return {"moonshine": moonshine, "encodec": encodec, "ast": ast, "dac": dac}


@pytest.mark.parametrize("name", ["moonshine", "encodec", "ast", "dac"])
def test_audio_default_inputs_have_the_shape_the_forward_takes(tmp_path, name, capsys):
    """A one-dimensional second of audio failed deep in these forwards (exit 3): Moonshine needs its decoder's ids,
    Encodec and DAC a channel dimension, AST a spectrogram of ``max_length`` frames by ``num_mel_bins``."""
    config = _audio_configs()[name]
    config.save_pretrained(tmp_path)
    spec = f"hf:{tmp_path / 'config.json'}"
    assert main(["summary", spec, "-q"]) == 0, capsys.readouterr().err
    resolved = resolve_model(spec)
    args, kwargs = resolved.inputs.build("cpu")
    if name == "moonshine":
        assert args[0].dim() == 2 and tuple(kwargs["decoder_input_ids"].shape) == (1, config.max_position_embeddings)
        assert int(kwargs["decoder_input_ids"].max()) < config.vocab_size
    elif name in ("encodec", "dac"):
        assert tuple(args[0].shape)[:2] == (1, getattr(config, "audio_channels", 1)) and args[0].dim() == 3
    else:
        assert tuple(args[0].shape) == (1, config.max_length, config.num_mel_bins)
    torch.manual_seed(0)
    config._attn_implementation = "eager"  # every attention product a matmul torch has a formula for
    oracle = getattr(transformers, config.architectures[0])(config).eval()
    lstm_macs = []  # torch has no LSTM formula: 4 gates, each an (input + hidden) x hidden product per step

    def lstm_hook(module, inputs, output):
        steps = inputs[0].shape[0] * inputs[0].shape[1]
        lstm_macs.append(steps * 4 * module.hidden_size * (module.input_size + module.hidden_size))

    hooks = [m.register_forward_hook(lstm_hook) for m in oracle.modules() if isinstance(m, torch.nn.LSTM)]
    assert all(m.num_layers == 1 for m in oracle.modules() if isinstance(m, torch.nn.LSTM))
    counter = _TorchFormulas()
    with torch.no_grad(), counter:
        oracle(*args, **kwargs)  # transformers' own model accepts the default input
    for hook in hooks:
        hook.remove()
    assert bool(lstm_macs) == (name == "encodec")
    report = netscope.summary(oracle, input_data=(tuple(args), kwargs), audit_names=False)
    assert report.totals.total_params == sum(p.numel() for p in oracle.parameters())
    assert not report.partial, report.uncounted_ops()
    assert report.totals.total_macs == counter.flops // 2 + sum(lstm_macs) > 0


@pytest.mark.parametrize("architecture", ["SpeechT5Model", "SpeechT5ForSpeechToText", "SpeechT5ForTextToSpeech",
                                          "SpeechT5ForSpeechToSpeech"])
def test_speecht5_default_inputs_feed_what_its_prenets_take(tmp_path, architecture, capsys):
    """SpeechT5Model (no prenets) got a second of audio where its encoder takes hidden states, and the text- and
    speech-to-speech heads no ``decoder_input_values``: each forward raised (exit 3)."""
    config = transformers.SpeechT5Config(
        vocab_size=100, hidden_size=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=16,
        speech_decoder_prenet_units=32, speech_decoder_postnet_units=32, speech_decoder_postnet_layers=2,
        conv_dim=(32, 32), conv_stride=(5, 2), conv_kernel=(10, 3), num_feat_extract_layers=2,
        architectures=[architecture])
    config.save_pretrained(tmp_path)
    spec = f"hf:{tmp_path / 'config.json'}"
    assert main(["summary", spec, "-q"]) == 0, capsys.readouterr().err
    args, kwargs = resolve_model(spec).inputs.build("cpu")
    decoder_width = {"SpeechT5Model": config.hidden_size, "SpeechT5ForTextToSpeech": config.num_mel_bins,
                     "SpeechT5ForSpeechToSpeech": config.num_mel_bins}.get(architecture)
    if decoder_width is not None:
        assert tuple(kwargs["decoder_input_values"].shape)[::2] == (1, decoder_width)
    if architecture == "SpeechT5Model":
        assert tuple(args[0].shape)[::2] == (1, config.hidden_size) and args[0].is_floating_point()
    torch.manual_seed(0)
    config._attn_implementation = "eager"
    oracle = getattr(transformers, architecture)(config).eval()
    _counts_as_torch_does(oracle, args, kwargs)


@pytest.mark.parametrize("architecture", ["Blip2Model", "Blip2ForConditionalGeneration"])
def test_blip2_token_ids_hold_one_image_token_per_query(tmp_path, architecture, capsys):
    """BLIP-2 puts its ``num_query_tokens`` Q-Former outputs where ``input_ids`` holds ``image_token_index``:
    netscope's ids held none and the forward raised (exit 3). Oracle: transformers' own model on those inputs."""
    config = transformers.Blip2Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        qformer_config=dict(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                            num_attention_heads=2, encoder_hidden_size=32),
        text_config=dict(model_type="opt", vocab_size=100, hidden_size=32, ffn_dim=64, num_hidden_layers=1,
                         num_attention_heads=2, word_embed_proj_dim=32, max_position_embeddings=64),
        num_query_tokens=4, image_token_index=99, architectures=[architecture])
    config.save_pretrained(tmp_path)
    spec = f"hf:{tmp_path / 'config.json'}"
    assert main(["summary", spec, "-q"]) == 0, capsys.readouterr().err
    args, kwargs = resolve_model(spec).inputs.build("cpu")
    ids = kwargs["input_ids"]
    assert tuple(args[0].shape) == (1, 3, 32, 32)
    assert int((ids == 99).sum()) == config.num_query_tokens and bool((ids[0, :4] == 99).all())
    assert int(ids.max()) < config.text_config.vocab_size and ids.shape[1] <= 64
    torch.manual_seed(0)
    config._attn_implementation = "eager"
    for part in (config.vision_config, config.qformer_config, config.text_config):
        part._attn_implementation = "eager"
    oracle = getattr(transformers, architecture)(config).eval()
    _counts_as_torch_does(oracle, args, kwargs)


@pytest.mark.parametrize("name", ["videomae", "timesformer", "vivit"])
def test_video_models_get_a_clip_of_num_frames(tmp_path, name, capsys):
    """Video models take ``pixel_values`` ``(batch, num_frames, channels, height, width)``: one image made their
    patch embedding raise (exit 3)."""
    small = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=32,
                 num_frames=4)
    config = {"videomae": lambda: transformers.VideoMAEConfig(**small, patch_size=16, tubelet_size=2,
                                                               architectures=["VideoMAEModel"]),
              "timesformer": lambda: transformers.TimesformerConfig(**small, patch_size=16,
                                                                     architectures=["TimesformerModel"]),
              "vivit": lambda: transformers.VivitConfig(**small, tubelet_size=[2, 16, 16],
                                                        architectures=["VivitModel"])}[name]()
    config.save_pretrained(tmp_path)
    spec = f"hf:{tmp_path / 'config.json'}"
    assert main(["summary", spec, "-q"]) == 0, capsys.readouterr().err
    args, kwargs = resolve_model(spec).inputs.build("cpu")
    assert tuple(args[0].shape) == (1, 4, config.num_channels, 32, 32)
    torch.manual_seed(0)
    config._attn_implementation = "eager"
    oracle = getattr(transformers, config.architectures[0])(config).eval()
    _counts_as_torch_does(oracle, args, kwargs)


@pytest.mark.parametrize("name", ["wav2vec2-bert", "patchtst", "patchtsmixer"])
def test_feature_and_time_series_inputs_have_the_shape_the_forward_takes(tmp_path, name, capsys):
    """Wav2Vec2-BERT's ``input_features`` are stacked filterbank frames ``(1, frames, feature_projection_input_dim)``,
    PatchTST's and PatchTSMixer's ``past_values`` ``(1, context_length, num_input_channels)``: netscope's generic
    guess made each forward raise (exit 3)."""
    config = {
        "wav2vec2-bert": lambda: transformers.Wav2Vec2BertConfig(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
            output_hidden_size=32, feature_projection_input_dim=24, architectures=["Wav2Vec2BertModel"]),
        "patchtst": lambda: transformers.PatchTSTConfig(
            num_input_channels=3, context_length=24, patch_length=4, patch_stride=4, d_model=16,
            num_hidden_layers=1, num_attention_heads=2, ffn_dim=32, architectures=["PatchTSTModel"]),
        "patchtsmixer": lambda: transformers.PatchTSMixerConfig(
            num_input_channels=3, context_length=24, patch_length=4, patch_stride=4, d_model=16, num_layers=1,
            architectures=["PatchTSMixerModel"]),
    }[name]()
    config.save_pretrained(tmp_path)
    spec = f"hf:{tmp_path / 'config.json'}"
    assert main(["summary", spec, "-q"]) == 0, capsys.readouterr().err
    args, kwargs = resolve_model(spec).inputs.build("cpu")
    if name == "wav2vec2-bert":
        assert tuple(args[0].shape)[::2] == (1, config.feature_projection_input_dim)
    else:
        assert tuple(args[0].shape) == (1, config.context_length, config.num_input_channels)
    torch.manual_seed(0)
    config._attn_implementation = "eager"
    oracle = getattr(transformers, config.architectures[0])(config).eval()
    _counts_as_torch_does(oracle, args, kwargs)


def _forward_input_configs():
    """Small configs of families whose forward needs more than their main input (each exited 3 on netscope's own
    default input): the keyword each needs, as its model's docstring names it."""
    return {
        "kosmos-2": transformers.Kosmos2Config(  # image_embeds_position_mask: where the image's features go
            text_config=dict(vocab_size=100, embed_dim=32, layers=1, attention_heads=2, ffn_dim=64,
                             max_position_embeddings=256),
            vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                               image_size=32, patch_size=16),
            latent_query_num=4, architectures=["Kosmos2Model"]),
        "bros": transformers.BrosConfig(  # bbox: each token's box
            vocab_size=100, hidden_size=64, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
            architectures=["BrosModel"]),
        "xmod": transformers.XmodConfig(  # lang_ids (or a default_language): which adapter runs
            vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
            languages=["en_XX", "de_DE"], architectures=["XmodModel"]),
        "clvp": transformers.ClvpConfig(  # input_features: the log-mel spectrogram next to the text
            text_config=dict(vocab_size=256, hidden_size=64, intermediate_size=64, projection_dim=16,
                             num_hidden_layers=1, num_attention_heads=2),
            speech_config=dict(vocab_size=100, hidden_size=64, intermediate_size=64, projection_dim=16,
                               num_hidden_layers=1, num_attention_heads=2),
            decoder_config=dict(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                max_text_tokens=160, max_mel_tokens=64, feature_size=16, num_mel_attn_blocks=1,
                                decoder_fixing_codes=[83, 45, 45, 50], start_of_mel_token=98, stop_of_mel_token=99),
            architectures=["ClvpModelForConditionalGeneration"]),
        "univnet": transformers.UnivNetConfig(  # (batch, frames, num_mel_bins), not a guessed Conv1d input
            model_in_channels=8, model_hidden_channels=8, num_mel_bins=16, resblock_kernel_sizes=[3],
            resblock_stride_sizes=[4], resblock_dilation_sizes=[[1, 3]], kernel_predictor_num_blocks=1,
            kernel_predictor_hidden_channels=8, architectures=["UnivNetModel"]),
        "decision_transformer": transformers.DecisionTransformerConfig(  # a trajectory, not a vector of 128
            state_dim=5, act_dim=3, hidden_size=32, n_layer=1, n_head=2, n_inner=64, max_ep_len=50, n_positions=512,
            architectures=["DecisionTransformerModel"]),
    }


@pytest.mark.parametrize("name", ["kosmos-2", "bros", "xmod", "clvp", "univnet", "decision_transformer"])
def test_families_get_every_input_their_forward_needs(tmp_path, name, capsys):
    """``netscope summary hf:<config>`` exited 3 for these families: Kosmos-2 got no image_embeds_position_mask,
    Bros no bbox, X-MOD no lang_ids, CLVP no spectrogram, UnivNet a (1, 64, 224) guess, the Decision Transformer a
    [1, 128] vector. Each input is checked against the model's documented shape; transformers' own model runs on
    them, and netscope counts its parameters and torch's multiply-adds."""
    config = _forward_input_configs()[name]
    config.save_pretrained(tmp_path)
    spec = f"hf:{tmp_path / 'config.json'}"
    assert main(["summary", spec, "-q"]) == 0, capsys.readouterr().err
    args, kwargs = resolve_model(spec).inputs.build("cpu")
    shapes = {key: tuple(value.shape) for key, value in kwargs.items()}
    if name == "kosmos-2":
        length = shapes["input_ids"][1]
        mask = kwargs["image_embeds_position_mask"]
        assert shapes["image_embeds_position_mask"] == (1, length) and int(mask.sum()) == config.latent_query_num
        assert set(mask.unique().tolist()) == {0, 1}
    elif name == "bros":
        assert shapes["bbox"] == (*args[0].shape, 4)
    elif name == "xmod":
        assert shapes["lang_ids"] == (1,) and 0 <= int(kwargs["lang_ids"]) < len(config.languages)
    elif name == "clvp":
        assert shapes["input_features"][:2] == (1, config.decoder_config.feature_size)
    elif name == "univnet":
        assert tuple(args[0].shape)[::2] == (1, config.num_mel_bins)
        assert shapes["noise_sequence"] == (*args[0].shape[:2], config.model_in_channels)
    else:
        steps = args[0].shape[1]
        assert tuple(args[0].shape) == (1, steps, config.state_dim) and shapes["actions"] == (1, steps, config.act_dim)
        assert shapes["rewards"] == shapes["returns_to_go"] == (1, steps, 1) and shapes["timesteps"] == (1, steps)
        assert int(kwargs["timesteps"].max()) < config.max_ep_len
    torch.manual_seed(0)
    for part in [config] + [getattr(config, key) for key in ("text_config", "vision_config", "speech_config",
                                                              "decoder_config") if hasattr(config, key)]:
        part._attn_implementation = "eager"
    oracle = getattr(transformers, config.architectures[0])(config).eval()
    _counts_as_torch_does(oracle, args, kwargs)
