//! The seed's token model, `EncoderDecoderCrossFormer` (`../shared/seed/token/model/
//! architectures/crossformer.py`) with the `Seq2SeqCrossFormer` wrapper's sequence handling
//! (`hf_transformer.py`): BOS prepended to the EEG input, EOS appended to the MEG labels, the
//! decoder fed the labels shifted right (teacher forcing), cross-entropy over 258 ids.
//!
//! Data flow, shapes for B windows of T steps, Ce EEG and Cm MEG channels, D = d_model:
//! ids [B, T+1, C] → embedding + sinusoidal time position + sinusoidal channel position, all
//! times √D (the seed scales *after* adding the positions) → encoder TSA layers →
//! decoder: per layer a TSA with causal time attention, then cross-attention from the Cm MEG
//! channels to the Ce EEG channels of the same time step, whose output *replaces* the
//! decoder state (the seed adds no residual there) → linear head → logits [B, T+1, Cm, 258].
//!
//! Decoding one step at a time ([`CrossFormer::generate`]) keeps each decoder layer's time
//! keys/values, so T steps cost T incremental steps (each O(t) attention), not T full passes;
//! it produces exactly the teacher-forced logits when fed the same tokens (tested).

use tch::nn::{Init, Path};
use tch::{Device, Kind, Reduction, Tensor};

use crate::config::{DecoderEeg, ModelConfig};
use crate::layers::{key_padding_mask, sinusoidal_table, Embedding, KvCache, Linear, Mask, MultiheadAttention};
use crate::tsa::{TimeMasks, TwoStageAttention};

/// The token encoder–decoder. Parameter names are the seed's `state_dict()` names.
#[derive(Debug)]
pub struct CrossFormer {
    cfg: ModelConfig,
    encoder: Vec<TwoStageAttention>,
    decoder: Vec<TwoStageAttention>,
    cross: Vec<MultiheadAttention>,
    /// `decoder_eeg = mixed` only: per layer a [Cm, Ce] map over channels.
    eeg_mix: Vec<Tensor>,
    src_embedding: Embedding,
    tgt_embedding: Embedding,
    output_layer: Linear,
    positions: Tensor,
    src_channels: Tensor,
    tgt_channels: Tensor,
    /// Positions per chunk of the training loss's output layer + cross-entropy
    /// ([`crate::chunked_ce`]); 0: the plain path, which holds every position's logits.
    loss_chunk: std::sync::atomic::AtomicI64,
}

/// Output of a teacher-forced pass.
pub struct TokenOutput {
    /// [B, T+1, Cm, vocab]: position t predicts label t (MEG step t, EOS at the end).
    pub logits: Tensor,
    /// The labels the logits are scored against, [B, T+1, Cm] (MEG ids then EOS).
    pub labels: Tensor,
    /// Mean cross-entropy over non-pad labels (scalar).
    pub loss: Tensor,
}

impl CrossFormer {
    pub fn new(p: &Path, cfg: &ModelConfig) -> CrossFormer {
        let (d, h, ff, drop) = (cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.dropout);
        let tsa = |p: Path, i: i64| {
            TwoStageAttention::new(&(&p / i), cfg.sequence_length, cfg.router_dim, d, h, ff, drop, cfg.channel_attention)
        };
        let encoder = (0..cfg.n_layers).map(|i| tsa(p / "encoder", i)).collect();
        let decoder = (0..cfg.n_layers).map(|i| tsa(p / "decoder", i)).collect();
        let cross = (0..cfg.n_layers)
            .map(|i| MultiheadAttention::new(&(p / "decoder_cross_attention_encoder" / i), d, h, true, drop))
            .collect();
        let eeg_mix = match cfg.decoder_eeg {
            DecoderEeg::Seed => Vec::new(),
            DecoderEeg::Mixed => {
                // nn.Linear's default init: U(−1/√fan_in, 1/√fan_in).
                let bound = 1.0 / (cfg.source_sequence_dimension as f64).sqrt();
                (0..cfg.n_layers)
                    .map(|i| {
                        (p / "decoder_eeg_mix" / i).var(
                            "weight",
                            &[cfg.target_sequence_dimension, cfg.source_sequence_dimension],
                            Init::Uniform { lo: -bound, up: bound },
                        )
                    })
                    .collect()
            }
        };
        let device = p.device();
        CrossFormer {
            cfg: cfg.clone(),
            encoder,
            decoder,
            cross,
            eeg_mix,
            src_embedding: Embedding::new(&(p / "src_embedding"), cfg.vocab_size_src, d),
            tgt_embedding: Embedding::new(&(p / "tgt_embedding"), cfg.vocab_size_tgt, d),
            output_layer: Linear::new(&(p / "output_layer"), d, cfg.vocab_size_tgt, true),
            // Not parameters in the seed either (plain tensors, absent from its state_dict).
            positions: sinusoidal_table(cfg.sequence_length + 1, d, device),
            src_channels: sinusoidal_table(cfg.source_sequence_dimension, d, device),
            tgt_channels: sinusoidal_table(cfg.target_sequence_dimension, d, device),
            loss_chunk: std::sync::atomic::AtomicI64::new(0),
        }
    }

    /// Computes the training loss ([`loss_hiding_history`](Self::loss_hiding_history)) over
    /// chunks of `positions` (batch × time × channel) positions without holding all logits
    /// (`bf-train --loss_chunk`); 0 restores the plain path. Same loss up to float summation
    /// order.
    pub fn set_loss_chunk(&self, positions: i64) {
        self.loss_chunk.store(positions.max(0), std::sync::atomic::Ordering::Relaxed);
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Token embedding + time position (from `t0`) + channel position, times √D: [B, T, C, D].
    fn embed(&self, ids: &Tensor, table: &Embedding, channels: &Tensor, t0: i64) -> Tensor {
        let (_, t, c) = ids.size3().expect("ids are [batch, time, channels]");
        let d = self.cfg.d_model;
        let x = table.forward(ids);
        let pos = self.positions.narrow(0, t0, t).view([1, t, 1, d]);
        let chan = channels.narrow(0, 0, c).view([1, 1, c, d]);
        (x + pos + chan) * (d as f64).sqrt()
    }

    /// Key padding of ids [B, T, C] in the time stage's "(b c) t" order.
    fn time_padding(&self, ids: &Tensor) -> Option<Tensor> {
        let (b, t, c) = ids.size3().expect("ids are [batch, time, channels]");
        key_padding_mask(&ids.permute([0, 2, 1]).reshape([b * c, t]), self.cfg.pad_token_id)
    }

    fn check_ids(&self, ids: &Tensor, channels: i64, what: &str) {
        let (_, t, c) = ids.size3().unwrap_or_else(|_| panic!("{what} ids must be [batch, time, channels]"));
        assert_eq!(c, channels, "{what}: {c} channels, the model has {channels}");
        assert!(t <= self.cfg.sequence_length + 1, "{what}: {t} steps exceed sequence_length + 1");
    }

    /// Runs the encoder on EEG ids with BOS already prepended, [B, T+1, Ce] → [B·(T+1), Ce, D].
    pub fn encode(&self, src: &Tensor, train: bool) -> Tensor {
        self.check_ids(src, self.cfg.source_sequence_dimension, "EEG");
        let (b, t, c) = src.size3().unwrap();
        let padding = self.time_padding(src);
        let masks = TimeMasks { causal: false, key_padding: padding.as_ref() };
        let mut x = self.embed(src, &self.src_embedding, &self.src_channels, 0);
        for layer in &self.encoder {
            x = layer.forward(&x, &masks, train);
        }
        x.reshape([b * t, c, self.cfg.d_model])
    }

    /// The seed's `EncoderDecoderCrossFormer.forward(src, tgt)`: logits [B, T, Cm, vocab]
    /// for ids that already carry BOS (src) and the shifted labels (tgt).
    pub fn forward_ids(&self, src: &Tensor, tgt: &Tensor, train: bool) -> Tensor {
        self.output_layer.forward(&self.decode(src, tgt, train))
    }

    /// [`forward_ids`](Self::forward_ids) up to the output layer: the decoder's output
    /// [B, T, Cm, D].
    fn decode(&self, src: &Tensor, tgt: &Tensor, train: bool) -> Tensor {
        assert_eq!(src.size()[1], tgt.size()[1], "source and target must have the same length");
        self.check_ids(tgt, self.cfg.target_sequence_dimension, "MEG");
        let memory = self.encode(src, train);
        let (b, t, c) = tgt.size3().unwrap();
        let d = self.cfg.d_model;
        let padding = self.time_padding(tgt);
        let masks = TimeMasks { causal: true, key_padding: padding.as_ref() };
        let mut x = self.embed(tgt, &self.tgt_embedding, &self.tgt_channels, 0);
        let next_eeg = self.eeg_at_predicted_step(&memory.view([b, t, -1, d]));
        for (i, (layer, cross)) in self.decoder.iter().zip(&self.cross).enumerate() {
            let s = layer.forward(&x, &masks, train).reshape([b * t, c, d]);
            let attended = cross.forward(&s, &memory, &memory, Mask::None, train);
            x = match &next_eeg {
                None => attended.view([b, t, c, d]),
                Some(eeg) => (s + attended).view([b, t, c, d]) + self.mix(i, eeg),
            };
        }
        x
    }

    /// `decoder_eeg = mixed`: the encoder output [B, T+1, Ce, D] realigned so that position
    /// i holds EEG step i, the step decoder position i predicts (both sequences start with
    /// BOS, so that is encoder position i + 1); the last position (EOS) gets zeros. `None`
    /// for the seed's decoder, which does not read it.
    fn eeg_at_predicted_step(&self, memory: &Tensor) -> Option<Tensor> {
        match self.cfg.decoder_eeg {
            DecoderEeg::Seed => None,
            DecoderEeg::Mixed => {
                let t = memory.size()[1];
                Some(Tensor::cat(&[memory.narrow(1, 1, t - 1), memory.narrow(1, 0, 1).zeros_like()], 1))
            }
        }
    }

    /// Layer `i`'s signed mix of EEG-channel encodings [.., Ce, D] into MEG channels [.., Cm, D].
    fn mix(&self, i: usize, eeg: &Tensor) -> Tensor {
        Tensor::einsum("...jd,cj->...cd", &[eeg, &self.eeg_mix[i]], None::<&[i64]>)
    }

    /// Teacher-forced pass on shard-shaped ids: `eeg` [B, T, Ce] and `meg` [B, T, Cm] model
    /// ids (level + 3). Adds BOS/EOS and shifts as the seed's wrapper does.
    pub fn forward(&self, eeg: &Tensor, meg: &Tensor, train: bool) -> TokenOutput {
        self.forward_hiding_history(eeg, meg, None, train)
    }

    /// [`forward`](Self::forward) with the MEG history of some examples hidden: where
    /// `hide` [B] (bool) is true, every decoder input after BOS becomes pad, which the time
    /// stage masks out, so those examples are predicted from the EEG alone. Labels are kept.
    /// Training with a share of hidden histories (`bf-train --history_dropout`) keeps the
    /// decoder from leaning only on the MEG's own past, which predicts a smooth signal's next
    /// sample well enough to drown the EEG's gradient.
    pub fn forward_hiding_history(&self, eeg: &Tensor, meg: &Tensor, hide: Option<&Tensor>, train: bool) -> TokenOutput {
        let (src, tgt, labels) = self.teacher_forcing(eeg, meg, hide);
        let logits = self.forward_ids(&src, &tgt, train);
        let loss = self.loss(&logits, &labels);
        TokenOutput { logits, labels, loss }
    }

    /// The loss of [`forward_hiding_history`](Self::forward_hiding_history) alone: through
    /// the chunked output layer + cross-entropy when [`set_loss_chunk`](Self::set_loss_chunk)
    /// asked for it (never holding every position's logits), else the plain path.
    pub fn loss_hiding_history(&self, eeg: &Tensor, meg: &Tensor, hide: Option<&Tensor>, train: bool) -> Tensor {
        let chunk = self.loss_chunk.load(std::sync::atomic::Ordering::Relaxed);
        if chunk == 0 {
            return self.forward_hiding_history(eeg, meg, hide, train).loss;
        }
        let (src, tgt, labels) = self.teacher_forcing(eeg, meg, hide);
        let hidden = self.decode(&src, &tgt, train).reshape([-1, self.cfg.d_model]);
        let (w, b) = (&self.output_layer.weight, self.output_layer.bias.as_ref());
        crate::chunked_ce::linear_cross_entropy(&hidden, w, b, &labels.reshape([-1]), self.cfg.pad_token_id, chunk)
    }

    /// Encoder input (EEG with BOS), decoder input (MEG with BOS, histories of `hide` as pad)
    /// and labels (MEG then EOS), as the seed's wrapper shifts them.
    fn teacher_forcing(&self, eeg: &Tensor, meg: &Tensor, hide: Option<&Tensor>) -> (Tensor, Tensor, Tensor) {
        let src = self.with_bos(eeg);
        let labels = Tensor::cat(&[meg.shallow_clone(), self.filled(meg, self.cfg.eos_token_id)], 1);
        let history = match hide {
            Some(hide) => {
                let pad = Tensor::full_like(meg, self.cfg.pad_token_id);
                pad.where_self(&hide.view([-1, 1, 1]), meg)
            }
            None => meg.shallow_clone(),
        };
        (src, self.with_bos(&history), labels)
    }

    /// Mean cross-entropy of logits [.., vocab] against labels, pad ignored.
    pub fn loss(&self, logits: &Tensor, labels: &Tensor) -> Tensor {
        let v = self.cfg.vocab_size_tgt;
        logits.view([-1, v]).to_kind(Kind::Float).cross_entropy_loss::<Tensor>(
            &labels.view([-1]),
            None,
            Reduction::Mean,
            self.cfg.pad_token_id,
            0.0,
        )
    }

    /// A [B, 1, C] block of `id` shaped like `x` [B, T, C].
    fn filled(&self, x: &Tensor, id: i64) -> Tensor {
        let (b, _, c) = x.size3().expect("ids are [batch, time, channels]");
        Tensor::full([b, 1, c], id, (Kind::Int64, x.device()))
    }

    fn with_bos(&self, x: &Tensor) -> Tensor {
        Tensor::cat(&[self.filled(x, self.cfg.bos_token_id), x.shallow_clone()], 1)
    }

    /// Free-running decoding of `steps` MEG time steps from EEG ids `eeg` [B, T, Ce]:
    /// returns the generated ids [B, steps, Cm] and their logits [B, steps, Cm, vocab].
    /// Greedy when `temperature` is `None`, else sampled from softmax(logits / temperature).
    /// As the seed's `generate`, step t reads the encoder output at position t. With
    /// `data_only`, the special ids (pad, BOS, EOS) are excluded from the choice: inside a
    /// window every step is a data step, and an undertrained model would otherwise emit them.
    pub fn generate(&self, eeg: &Tensor, steps: i64, temperature: Option<f64>, data_only: bool) -> (Tensor, Tensor) {
        tch::no_grad(|| {
            let src = self.with_bos(eeg);
            let t_src = src.size()[1];
            assert!(steps <= t_src, "cannot generate {steps} steps from {t_src} encoder positions");
            let memory = self.encode(&src, false);
            let (b, cm, d) = (eeg.size()[0], self.cfg.target_sequence_dimension, self.cfg.d_model);
            let memory = memory.view([b, t_src, self.cfg.source_sequence_dimension, d]);
            let mut caches: Vec<KvCache> = (0..self.decoder.len()).map(|_| KvCache::default()).collect();
            let mut current = Tensor::full([b, 1, cm], self.cfg.bos_token_id, (Kind::Int64, eeg.device()));
            let (mut ids, mut all_logits) = (Vec::new(), Vec::new());
            let next_eeg = self.eeg_at_predicted_step(&memory);
            for t in 0..steps {
                let next_eeg_t = next_eeg.as_ref().map(|m| m.select(1, t));
                let logits = self.decode_step(&current, &memory.select(1, t), next_eeg_t.as_ref(), t, &mut caches); // [B, Cm, V]
                let choose = if data_only {
                    let special = Tensor::arange(self.cfg.vocab_size_tgt, (Kind::Int64, logits.device())).lt(self.cfg.token_offset);
                    logits.masked_fill(&special, f64::NEG_INFINITY)
                } else {
                    logits.shallow_clone()
                };
                let next = match temperature {
                    None => choose.argmax(-1, false),
                    Some(temp) => (&choose / temp)
                        .softmax(-1, Kind::Float)
                        .view([b * cm, -1])
                        .multinomial(1, true)
                        .view([b, cm]),
                };
                current = next.unsqueeze(1);
                ids.push(next);
                all_logits.push(logits);
            }
            (Tensor::stack(&ids, 1), Tensor::stack(&all_logits, 1))
        })
    }

    /// Decoder at time `t` for ids [B, 1, Cm] with the encoder output of that step
    /// [B, Ce, D] (and of the next, for `decoder_eeg = mixed`); returns logits [B, Cm, vocab].
    fn decode_step(&self, ids: &Tensor, memory_t: &Tensor, next_eeg: Option<&Tensor>, t: i64, caches: &mut [KvCache]) -> Tensor {
        let (b, _, c) = ids.size3().unwrap();
        let d = self.cfg.d_model;
        let mut x = self.embed(ids, &self.tgt_embedding, &self.tgt_channels, t);
        for (i, ((layer, cross), cache)) in self.decoder.iter().zip(&self.cross).zip(caches.iter_mut()).enumerate() {
            let s = layer.forward_step(&x, t, cache).reshape([b, c, d]);
            let attended = cross.forward(&s, memory_t, memory_t, Mask::None, false);
            x = match next_eeg {
                None => attended.view([b, 1, c, d]),
                Some(eeg) => (s + attended + self.mix(i, eeg)).view([b, 1, c, d]),
            };
        }
        self.output_layer.forward(&x).view([b, c, -1])
    }

    /// Moves the non-parameter tables (positions) along with a device change of the store.
    pub fn device(&self) -> Device {
        self.positions.device()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::VarStore;

    /// A model small enough for a unit test: 3 EEG and 4 MEG channels, 5 steps.
    fn tiny(decoder_eeg: DecoderEeg) -> (VarStore, CrossFormer, ModelConfig) {
        tch::manual_seed(1);
        let cfg = ModelConfig {
            source_sequence_dimension: 3,
            target_sequence_dimension: 4,
            d_model: 8,
            n_heads: 2,
            d_ff: 16,
            sequence_length: 5,
            decoder_eeg,
            ..ModelConfig::default()
        };
        let vs = VarStore::new(Device::Cpu);
        let model = CrossFormer::new(&vs.root(), &cfg);
        (vs, model, cfg)
    }

    fn ids(shape: [i64; 3]) -> Tensor {
        Tensor::randint_low(3, 258, shape, (Kind::Int64, Device::Cpu))
    }

    #[test]
    fn hidden_history_reads_as_pad_and_keeps_the_labels() {
        let (_vs, model, cfg) = tiny(DecoderEeg::Seed);
        let (eeg, meg) = (ids([2, 5, 3]), ids([2, 5, 4]));
        let none = Tensor::from_slice(&[false, false]);
        let plain = model.forward(&eeg, &meg, false);
        let kept = model.forward_hiding_history(&eeg, &meg, Some(&none), false);
        assert!(plain.logits.allclose(&kept.logits, 0.0, 0.0, false), "hiding nothing changes nothing");

        let second = Tensor::from_slice(&[false, true]);
        let hidden = model.forward_hiding_history(&eeg, &meg, Some(&second), false);
        assert!(hidden.labels.equal(&plain.labels), "labels are the real MEG");
        let pad = Tensor::full_like(&meg.get(1), cfg.pad_token_id).unsqueeze(0);
        let alone = model.forward(&eeg.get(1).unsqueeze(0), &pad, false);
        assert!(hidden.logits.get(1).allclose(&alone.logits.get(0), 1e-5, 1e-6, false), "the hidden example sees only pad");
        assert!(hidden.logits.get(0).allclose(&plain.logits.get(0), 1e-5, 1e-6, false), "the other example is untouched");
    }

    #[test]
    fn mixed_cached_decoding_equals_the_teacher_forced_pass() {
        let (_vs, model, _) = tiny(DecoderEeg::Mixed);
        let eeg = ids([2, 5, 3]);
        let (generated, logits) = model.generate(&eeg, 5, None, true);
        let forced = model.forward(&eeg, &generated, false).logits.narrow(1, 0, 5);
        assert!(logits.allclose(&forced, 1e-5, 1e-5, false), "cached steps and the full pass disagree");
    }

    #[test]
    fn mixed_reads_the_eeg_of_the_predicted_step_and_adds_its_weights() {
        let (vs, model, _) = tiny(DecoderEeg::Mixed);
        assert!(vs.variables().contains_key("decoder_eeg_mix.0.weight"));
        assert!(!tiny(DecoderEeg::Seed).0.variables().contains_key("decoder_eeg_mix.0.weight"));
        // Changing EEG step 2 changes the prediction of MEG step 2 through the mix.
        let (eeg, meg) = (ids([1, 5, 3]), ids([1, 5, 4]));
        let other = eeg.copy();
        let _ = other.narrow(1, 2, 1).fill_(7);
        let a = model.forward(&eeg, &meg, false).logits;
        let b = model.forward(&other, &meg, false).logits;
        assert!(!a.get(0).get(2).allclose(&b.get(0).get(2), 1e-6, 1e-6, false));
    }
}
