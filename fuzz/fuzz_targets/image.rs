//! libFuzzer target: the image decoder of the ImageFolder / Tiny ImageNet readers (JPEG through libjpeg-turbo,
//! PNG and BMP through `image`) must return errors, never panic or allocate for dimensions the file cannot
//! encode, on any input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decal_data::imagefolder::decode_image_bytes(
        data,
        std::path::Path::new("fuzz"),
        decal_data::imagefolder::ColorMode::Rgb,
    );
});
