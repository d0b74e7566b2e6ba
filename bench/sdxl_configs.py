"""The published configs of full-size SDXL base 1.0 (data), for the GPU benches.

Used by ``bench/gpu_proof.py`` and ``bench/gpu_sdxl.py`` to build the real
architecture with random weights (nothing is downloaded); the parameter counts
are the published ones, which their CPU tests check.
"""

# stabilityai/stable-diffusion-xl-base-1.0, unet/config.json. Checked by the
# tests against the published parameter count, 2,567,463,684.
SDXL_UNET_CONFIG = {
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "center_input_sample": False,
    "class_embed_type": None,
    "class_embeddings_concat": False,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "cross_attention_dim": 2048,
    "cross_attention_norm": None,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "encoder_hid_dim": None,
    "encoder_hid_dim_type": None,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_only_cross_attention": None,
    "mid_block_scale_factor": 1,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_attention_heads": None,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816,
    "resnet_out_scale_factor": 1.0,
    "resnet_skip_time_act": False,
    "resnet_time_scale_shift": "default",
    "sample_size": 128,
    "time_cond_proj_dim": None,
    "time_embedding_act_fn": None,
    "time_embedding_dim": None,
    "time_embedding_type": "positional",
    "timestep_post_act": None,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "upcast_attention": None,
    "use_linear_projection": True,
}
SDXL_UNET_PARAMS = 2_567_463_684

# madebyollin/sdxl-vae-fp16-fix, config.json (the SDXL VAE, fp16-safe: no upcast).
SDXL_VAE_CONFIG = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "force_upcast": False,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "scaling_factor": 0.13025,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
SDXL_VAE_PARAMS = 83_653_863

# stabilityai/stable-diffusion-xl-base-1.0, text_encoder/config.json (CLIP ViT-L/14 text)
# and text_encoder_2/config.json (OpenCLIP ViT-bigG/14 text, with projection).
# Token ids as published (eos 2: CLIP pools at the argmax id, the real <|endoftext|> 49407).
_CLIP_IDS = {"vocab_size": 49408, "max_position_embeddings": 77, "bos_token_id": 0, "eos_token_id": 2,
             "pad_token_id": 1, "layer_norm_eps": 1e-05}
SDXL_TEXT_ENCODER_CONFIG = {**_CLIP_IDS, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                            "num_attention_heads": 12, "hidden_act": "quick_gelu", "projection_dim": 768}
SDXL_TEXT_ENCODER_2_CONFIG = {**_CLIP_IDS, "hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32,
                              "num_attention_heads": 20, "hidden_act": "gelu", "projection_dim": 1280}
SDXL_TEXT_ENCODER_PARAMS = 123_060_480
SDXL_TEXT_ENCODER_2_PARAMS = 694_659_840

# stabilityai/stable-diffusion-xl-base-1.0, scheduler/scheduler_config.json; the loader
# switches it to trailing spacing for Lightning.
SDXL_SCHEDULER_CONFIG = {
    "_class_name": "EulerDiscreteScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
    "use_karras_sigmas": False,
}
