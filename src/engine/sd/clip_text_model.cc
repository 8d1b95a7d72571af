#include "engine/sd/clip_text_model.h"

#include "core/status_util.h"
#include "core/strings.h"
#include "engine/sd/config_json.h"

namespace kiln::engine::sd {

absl::StatusOr<ClipTextConfig> ParseClipTextConfig(const nlohmann::json& config,
                                                   const std::filesystem::path& file,
                                                   bool with_projection) {
  ConfigReader r(config, file);
  ClipTextConfig c;
  c.vocab_size = r.Int("vocab_size", c.vocab_size);
  c.hidden_size = r.Int("hidden_size", c.hidden_size);
  c.intermediate_size = r.Int("intermediate_size", c.intermediate_size);
  c.num_layers = r.Int("num_hidden_layers", c.num_layers);
  c.num_heads = r.Int("num_attention_heads", c.num_heads);
  c.max_positions = r.Int("max_position_embeddings", c.max_positions);
  c.layer_norm_eps = r.Double("layer_norm_eps", c.layer_norm_eps);
  const std::string act = r.String("hidden_act", "quick_gelu");
  if (act != "quick_gelu" && act != "gelu") {
    r.Fail("hidden_act", StrCat("'", act, "' is not supported (quick_gelu or gelu)"));
  }
  c.quick_gelu = act == "quick_gelu";
  if (with_projection) c.projection_dim = r.Int("projection_dim", c.hidden_size);
  if (c.num_heads <= 0 || c.hidden_size % c.num_heads != 0) {
    r.Fail("num_attention_heads", "must divide hidden_size");
  }
  KILN_RETURN_IF_ERROR(r.status());
  return c;
}

ClipTextModel ClipTextModel::Load(const ClipTextConfig& config, Weights& w) {
  ClipTextModel m;
  m.config_ = config;
  const int64_t d = config.hidden_size, ff = config.intermediate_size;
  m.token_embedding =
      w.Take("text_model.embeddings.token_embedding.weight", {config.vocab_size, d});
  m.position_embedding =
      w.Take("text_model.embeddings.position_embedding.weight", {config.max_positions, d});
  for (int64_t i = 0; i < config.num_layers; ++i) {
    const std::string p = StrCat("text_model.encoder.layers.", i, ".");
    Layer l;
    l.norm1 = LoadLayerNorm(w, p + "layer_norm1", d, config.layer_norm_eps);
    l.norm2 = LoadLayerNorm(w, p + "layer_norm2", d, config.layer_norm_eps);
    l.q = LoadLinear(w, p + "self_attn.q_proj", d, d);
    l.k = LoadLinear(w, p + "self_attn.k_proj", d, d);
    l.v = LoadLinear(w, p + "self_attn.v_proj", d, d);
    l.out = LoadLinear(w, p + "self_attn.out_proj", d, d);
    l.fc1 = LoadLinear(w, p + "mlp.fc1", d, ff);
    l.fc2 = LoadLinear(w, p + "mlp.fc2", ff, d);
    m.layers_.push_back(std::move(l));
  }
  m.final_norm_ = LoadLayerNorm(w, "text_model.final_layer_norm", d, config.layer_norm_eps);
  if (config.projection_dim > 0) {
    m.projection_ = LoadLinear(w, "text_projection", d, config.projection_dim, /*bias=*/false);
  }
  return m;
}

ClipTextOutput ClipTextModel::Forward(const torch::Tensor& ids) const {
  const int64_t t = ids.size(1);
  ClipTextOutput out;
  torch::Tensor x =
      torch::embedding(token_embedding, ids) + position_embedding.slice(0, 0, t).unsqueeze(0);
  out.hidden_states.push_back(x);
  for (const Layer& l : layers_) {
    torch::Tensor h = l.norm1(x);
    x = x + l.out(Attention(l.q(h), l.k(h), l.v(h), config_.num_heads, /*causal=*/true));
    h = l.fc1(l.norm2(x));
    h = config_.quick_gelu ? h * torch::sigmoid(h * 1.702) : torch::gelu(h);
    x = x + l.fc2(h);
    out.hidden_states.push_back(x);
  }
  out.last_hidden_state = final_norm_(x);
  torch::Tensor eos = ids.argmax(1);
  out.pooled = out.last_hidden_state.index(
      {torch::arange(ids.size(0), torch::TensorOptions().device(ids.device())), eos});
  if (projection_.weight.defined()) out.text_embeds = projection_(out.pooled);
  return out;
}

}  // namespace kiln::engine::sd
