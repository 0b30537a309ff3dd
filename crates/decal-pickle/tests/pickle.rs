//! decal-pickle against pickles written by CPython (protocols 0–5), NumPy arrays, `torch.save` archives
//! and the seed's real Lightning checkpoint; plus "never panics" properties on arbitrary bytes.

use decal_pickle::{numpy, parse, PickleError, Value};
use std::path::Path;

fn golden(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(name),
    )
    .unwrap()
}

fn s(x: &str) -> Value {
    Value::Str(x.into())
}

fn zip_member(bytes: &[u8], suffix: &str) -> Vec<u8> {
    use std::io::Read;
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let name = z
        .file_names()
        .find(|n| n.ends_with(suffix))
        .unwrap()
        .to_string();
    let mut out = Vec::new();
    z.by_name(&name).unwrap().read_to_end(&mut out).unwrap();
    out
}

#[test]
fn every_protocol_decodes_the_same_object() {
    for proto in 0..=5 {
        let v = parse(&golden(&format!("obj_p{proto}.pkl")))
            .unwrap_or_else(|e| panic!("protocol {proto}: {e}"));
        let ctx = format!("protocol {proto}");
        assert_eq!(v.get("none"), Some(&Value::None), "{ctx}");
        // Protocol 0/1 write True as INT "01".
        assert_eq!(v.get("true"), Some(&Value::Bool(true)), "{ctx}");
        assert_eq!(v.get("false"), Some(&Value::Bool(false)), "{ctx}");
        assert_eq!(v.get("small"), Some(&Value::Int(7)), "{ctx}");
        assert_eq!(v.get("neg"), Some(&Value::Int(-300)), "{ctx}");
        assert_eq!(v.get("i32"), Some(&Value::Int(2147483647)), "{ctx}");
        // 2^70 little-endian two's complement: 9 bytes, byte 8 = 0x40.
        let mut big = vec![0u8; 9];
        big[8] = 0x40;
        assert_eq!(v.get("big"), Some(&Value::BigInt(big)), "{ctx}");
        match v.get("negbig") {
            Some(Value::BigInt(b)) => {
                // -(2^65) - 3 = ...: check by adding 2^65+3 back in two's complement.
                assert_eq!(b[0], 0xfd, "{ctx}");
                assert_eq!(*b.last().unwrap() & 0x80, 0x80, "{ctx}");
            }
            other => panic!("{ctx}: {other:?}"),
        }
        assert_eq!(v.get("float"), Some(&Value::Float(0.1)), "{ctx}");
        assert_eq!(v.get("str"), Some(&s("héllo ✓")), "{ctx}");
        assert_eq!(
            v.get("bytes").unwrap().as_bytes_latin1().unwrap().as_ref(),
            b"\x00\xff ab",
            "{ctx}"
        );
        assert_eq!(
            v.get("list"),
            Some(&Value::List(vec![Value::Int(1), s("a"), Value::Float(2.5)])),
            "{ctx}"
        );
        assert_eq!(
            v.get("tuple"),
            Some(&Value::Tuple(vec![
                Value::Int(1),
                Value::Tuple(vec![Value::Int(2), Value::Int(3)])
            ])),
            "{ctx}"
        );
        assert_eq!(v.get("empty"), Some(&Value::Tuple(vec![])), "{ctx}");
        let nested = v.get("nested").unwrap().get("k").unwrap().as_seq().unwrap();
        assert_eq!(nested[0].get("x"), Some(&Value::Int(1)), "{ctx}");
        // Shared references come back as equal copies, with the final contents.
        assert_eq!(
            v.get("shared_a"),
            Some(&Value::List(vec![Value::Int(1), Value::Int(2)])),
            "{ctx}"
        );
        assert_eq!(v.get("shared_a"), v.get("shared_b"), "{ctx}");
        // Sets are Reduce(builtins.set, ([items],)) at every protocol.
        let set = v.get("set").unwrap();
        let Value::Reduce { callable, args } = set else {
            panic!("{ctx}: {set:?}")
        };
        assert!(
            matches!(callable.as_global(), Some((_, "set"))),
            "{ctx}: {callable:?}"
        );
        assert!(format!("{args:?}").contains("Int(3)"), "{ctx}: {args:?}");
        let od = v.get("od").unwrap();
        let keys: Vec<_> = od
            .dict_items()
            .unwrap()
            .iter()
            .map(|(k, _)| k.as_str().unwrap().to_string())
            .collect();
        assert_eq!(keys, vec!["z", "a"], "{ctx}");
    }
}

#[test]
fn numpy_arrays_are_recovered() {
    let v = parse(&golden("numpy_u8_p2.pkl")).unwrap();
    let a = numpy::ndarray(v.get("data").unwrap()).unwrap();
    assert_eq!(a.shape, vec![2, 3, 4]);
    assert_eq!(a.dtype, "u1");
    assert!(!a.fortran_order);
    assert_eq!(a.data, (0..24).collect::<Vec<u8>>());
    assert_eq!(
        v.get("labels"),
        Some(&Value::List(vec![Value::Int(1), Value::Int(2)]))
    );

    let f = numpy::ndarray(&parse(&golden("numpy_f4_fortran_p4.pkl")).unwrap()).unwrap();
    assert_eq!(
        (
            f.shape.clone(),
            f.dtype.as_str(),
            f.byte_order,
            f.fortran_order
        ),
        (vec![2, 3], "f4", '<', true)
    );
    let vals: Vec<f32> = f
        .data
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    // Fortran order of [[0,1,2],[3,4,5]] is 0,3,1,4,2,5.
    assert_eq!(vals, vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
}

/// The `(storage key, dtype name, shape)` of a `torch._utils._rebuild_tensor_v2` reduction.
fn tensor_info(v: &Value) -> (String, String, Vec<i64>) {
    let Value::Reduce { callable, args } = v else {
        panic!("{v:?}")
    };
    assert_eq!(
        callable.as_global(),
        Some(("torch._utils", "_rebuild_tensor_v2"))
    );
    let a = args.as_seq().unwrap();
    let Value::PersistentId(pid) = &a[0] else {
        panic!("{:?}", a[0])
    };
    let pid = pid.as_seq().unwrap();
    assert_eq!(pid[0], s("storage"));
    let dtype = pid[1].as_global().unwrap().1.to_string();
    let key = pid[2].as_str().unwrap().to_string();
    let shape = a[2]
        .as_seq()
        .unwrap()
        .iter()
        .map(|d| d.as_int().unwrap())
        .collect();
    (key, dtype, shape)
}

#[test]
fn torch_save_archive_exposes_the_state_dict() {
    let pkl = zip_member(&golden("torch_small.pt"), "data.pkl");
    let v = parse(&pkl).unwrap();
    assert_eq!(v.get("epoch"), Some(&Value::Int(3)));
    let sd = v.get("state_dict").unwrap();
    let keys: Vec<_> = sd
        .dict_items()
        .unwrap()
        .iter()
        .map(|(k, _)| k.as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        vec!["conv.weight", "conv.bias", "bn.num_batches_tracked"]
    );
    assert_eq!(
        tensor_info(sd.get("conv.weight").unwrap()),
        ("0".into(), "FloatStorage".into(), vec![2, 1, 3, 3])
    );
    assert_eq!(
        tensor_info(sd.get("bn.num_batches_tracked").unwrap()),
        ("2".into(), "LongStorage".into(), vec![])
    );
}

#[test]
fn seed_lightning_checkpoint_parses() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/checkpoints/seed-cnn-cifar10-seed1.ckpt");
    if !p.exists() {
        eprintln!("skipping: {} not found", p.display());
        return;
    }
    let pkl = zip_member(&std::fs::read(&p).unwrap(), "data.pkl");
    let v = parse(&pkl).unwrap();
    let sd = v.get("state_dict").expect("state_dict");
    let keys: Vec<_> = sd
        .dict_items()
        .unwrap()
        .iter()
        .map(|(k, _)| k.as_str().unwrap().to_string())
        .collect();
    assert!(keys.contains(&"model.conv1.weight".to_string()), "{keys:?}");
    assert!(keys.contains(&"model.fc3.bias".to_string()), "{keys:?}");
    let (_, dtype, shape) = tensor_info(sd.get("model.conv1.weight").unwrap());
    assert_eq!((dtype.as_str(), shape), ("FloatStorage", vec![6, 3, 5, 5]));
}

#[test]
fn hostile_inputs_are_errors() {
    // Truncated.
    assert!(matches!(
        parse(b"\x80\x02K"),
        Err(PickleError::Truncated(_))
    ));
    assert!(matches!(parse(b""), Err(PickleError::Truncated(_))));
    // BINUNICODE claiming 4 GiB: rejected before allocating.
    assert!(matches!(
        parse(b"X\xff\xff\xff\xff"),
        Err(PickleError::Limit { .. })
    ));
    assert!(matches!(
        parse(b"\x8d\xff\xff\xff\xff\xff\xff\xff\x7f"),
        Err(PickleError::Limit { .. })
    ));
    // Unknown opcode, stack underflow, missing mark, bad memo key.
    assert!(matches!(
        parse(b"\xff"),
        Err(PickleError::UnknownOpcode { op: 0xff, pos: 0 })
    ));
    assert!(matches!(parse(b"."), Err(PickleError::Malformed { .. })));
    assert!(matches!(parse(b"N."), Ok(Value::None)));
    assert!(matches!(parse(b"t."), Err(PickleError::Malformed { .. })));
    assert!(matches!(
        parse(b"h\x05."),
        Err(PickleError::Malformed { .. })
    ));
    // Deep nesting: 100k nested lists is a limit error, not a stack overflow.
    let mut deep = vec![b']'; 100_000];
    deep.extend(std::iter::repeat_n(b'a', 99_999));
    deep.push(b'.');
    assert!(matches!(parse(&deep), Err(PickleError::Limit { .. })));
    // Memo amplification: one 1 MiB string fetched 10k times exceeds the copy budget.
    let mut amp = b"\x8d".to_vec();
    amp.extend((1u64 << 20).to_le_bytes());
    amp.extend(vec![b'x'; 1 << 20]);
    amp.extend(b"q\x00(");
    for _ in 0..2000 {
        amp.extend(b"h\x00");
    }
    amp.extend(b"l.");
    let lim = decal_pickle::Limits {
        max_memo_copy_bytes: 1 << 28,
        ..Default::default()
    };
    assert!(matches!(
        decal_pickle::parse_with_limits(&amp, lim),
        Err(PickleError::Limit { .. })
    ));
    // Executable-looking content is data, never run.
    let v = parse(b"cos\nsystem\n(S'echo hi'\ntR.").unwrap();
    assert_eq!(
        v,
        Value::Reduce {
            callable: Box::new(Value::Global {
                module: "os".into(),
                name: "system".into()
            }),
            args: Box::new(Value::Tuple(vec![s("echo hi")])),
        }
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn never_panics_on_mutated_real_pickles(idx in 0usize..6, flips in proptest::collection::vec((0usize..700, proptest::num::u8::ANY), 1..8), cut in 0usize..700) {
        let mut b = golden(&format!("obj_p{idx}.pkl"));
        for (at, v) in flips {
            let n = b.len();
            b[at % n] = v;
        }
        b.truncate(cut.max(1));
        let _ = parse(&b);
    }
}
