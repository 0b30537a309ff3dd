//! Property tests: write → read is the identity for every dtype and shape.

use decal_io::npy::{self, NpyArray, NpyData};
use proptest::prelude::*;

fn shape_and_len() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..5, 0..4)
}

proptest! {
    #[test]
    fn f32_round_trip(shape in shape_and_len(), seed in any::<u64>()) {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|i| f32::from_bits((seed as u32).wrapping_mul(2654435761).wrapping_add(i as u32 * 7919)) ).collect();
        let a = NpyArray::from_f32(shape, data);
        let b = npy::from_bytes(&npy::to_bytes(&a).unwrap(), std::path::Path::new("mem")).unwrap();
        prop_assert_eq!(a.shape, b.shape.clone());
        // Compare bit patterns so NaN payloads count too.
        match (&a.data, &b.data) {
            (NpyData::F32(x), NpyData::F32(y)) => prop_assert!(x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits())),
            _ => prop_assert!(false),
        }
    }

    #[test]
    fn int_round_trip(v in prop::collection::vec(any::<i64>(), 0..50), w in prop::collection::vec(any::<u16>(), 0..50), z in prop::collection::vec(any::<i8>(), 0..50)) {
        for a in [
            NpyArray::from_i64(vec![v.len()], v.clone()),
            NpyArray { shape: vec![w.len()], data: NpyData::U16(w.clone()) },
            NpyArray { shape: vec![z.len(), 1], data: NpyData::I8(z.clone()) },
        ] {
            let b = npy::from_bytes(&npy::to_bytes(&a).unwrap(), std::path::Path::new("mem")).unwrap();
            prop_assert_eq!(a, b);
        }
    }
}

#[test]
fn large_header_uses_version_2() {
    // A shape whose header exceeds 65535 bytes forces format 2.0 (numpy does the same).
    let shape: Vec<usize> = vec![1; 30_000];
    let a = NpyArray::from_f64(shape, vec![2.0]);
    let bytes = npy::to_bytes(&a).unwrap();
    assert_eq!(bytes[6], 2);
    let h = npy::parse_header(&bytes, std::path::Path::new("mem")).unwrap();
    assert_eq!(h.data_offset % 64, 0);
    assert_eq!(
        npy::from_bytes(&bytes, std::path::Path::new("mem")).unwrap(),
        a
    );
}

#[test]
fn f16_conversion_edge_cases() {
    assert_eq!(npy::f16_to_f32(0x3c00), 1.0);
    assert_eq!(npy::f16_to_f32(0xc000), -2.0);
    assert_eq!(npy::f16_to_f32(0x0001), 5.960_464_5e-8);
    assert_eq!(npy::f16_to_f32(0x7bff), 65504.0);
    assert!(npy::f16_to_f32(0x7c00).is_infinite());
    assert!(npy::f16_to_f32(0x7e00).is_nan());
    assert_eq!(npy::f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
}
