//! The fused CPU dropouts (attention weights and activations) draw their seeds from
//! libtorch's default generator, so `tch::manual_seed` decides them, as it decides
//! libtorch's own dropout; exact resume relies on this. A test binary of its own: the
//! generator is process-wide, and tests in one binary run on parallel threads.

use bf_model::fused_attention::{attention, dropout};
use tch::{Device, Kind, Tensor};

#[test]
fn the_torch_seed_decides_both_dropouts() {
    let x = Tensor::randn([4, 6, 8], (Kind::Float, Device::Cpu));
    let attend = |seed| {
        tch::manual_seed(seed);
        attention(&x, &x, &x, None, 2, false, 0.5)
    };
    assert!(attend(1).equal(&attend(1)), "same torch seed, same attention dropout");
    assert!(!attend(1).equal(&attend(2)), "another torch seed, another attention dropout");
    let drop = |seed| {
        tch::manual_seed(seed);
        dropout(&x, 0.5)
    };
    assert!(drop(1).equal(&drop(1)), "same torch seed, same activation dropout");
    assert!(!drop(1).equal(&drop(2)), "another torch seed, another activation dropout");
}
