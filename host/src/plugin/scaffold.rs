//! `arca plugin new <world> <name>`: a plugin that builds, from the SDK's template for its
//! world (`sdk/plugin/templates/<world>`, embedded here so that the command works wherever the
//! binary is), with its name, crate name and manifest filled in and its dependency pointing at
//! the SDK.

use std::path::{Path, PathBuf};

use super::manifest::World;

/// A template's files: (path in the plugin, text).
fn template(world: World) -> [(&'static str, &'static str); 4] {
    macro_rules! files {
        ($dir:literal) => {
            [
                (
                    "Cargo.toml",
                    include_str!(concat!(
                        "../../../sdk/plugin/templates/",
                        $dir,
                        "/Cargo.toml"
                    )),
                ),
                (
                    "plugin.toml",
                    include_str!(concat!(
                        "../../../sdk/plugin/templates/",
                        $dir,
                        "/plugin.toml"
                    )),
                ),
                (
                    "src/lib.rs",
                    include_str!(concat!(
                        "../../../sdk/plugin/templates/",
                        $dir,
                        "/src/lib.rs"
                    )),
                ),
                (
                    ".cargo/config.toml",
                    include_str!(concat!(
                        "../../../sdk/plugin/templates/",
                        $dir,
                        "/.cargo/config.toml"
                    )),
                ),
            ]
        };
    }
    match world {
        World::Rotator => files!("rotator"),
        World::SseIntegration => files!("sse-integration"),
        World::AccessPolicy => files!("access-policy"),
    }
}

/// Writes a new plugin `name` of `world` into `<into>/<name>/`, its SDK dependency at `sdk`
/// (the `sdk/plugin` directory of an Arca checkout). Refuses a name a manifest would refuse,
/// and a directory that exists. Returns the plugin's directory.
pub fn scaffold(world: World, name: &str, into: &Path, sdk: &Path) -> Result<PathBuf, String> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(format!(
            "`{name}` is not a plugin name: lower-case letters, digits and `-`, starting with a letter"
        ));
    }
    let dir = into.join(name);
    if dir.exists() {
        return Err(format!("{} exists already", dir.display()));
    }
    let sdk = sdk
        .canonicalize()
        .map_err(|e| format!("the SDK at {}: {e}", sdk.display()))?;
    let template_name = format!("my-{world}");
    let (template_crate, crate_name) = (template_name.replace('-', "_"), name.replace('-', "_"));
    for (path, text) in template(world) {
        let text = text
            .replace(&template_crate, &crate_name)
            .replace(&template_name, name)
            .replace(
                "path = \"../..\"",
                &format!("path = {:?}", sdk.display().to_string()),
            );
        let file = dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
    }
    std::fs::write(dir.join(".gitignore"), "target/\n*.wasm\n")
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_plugin_has_its_names_and_the_sdk_path() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk/plugin");
        let dir = scaffold(World::Rotator, "orders-rotator", tmp.path(), &sdk)
            .unwrap_or_else(|e| panic!("{e}"));
        let read = |p: &str| std::fs::read_to_string(dir.join(p)).unwrap_or_default();
        let manifest = read("plugin.toml");
        assert!(manifest.contains("name = \"orders-rotator\""), "{manifest}");
        assert!(
            manifest.contains("component = \"orders_rotator.wasm\""),
            "{manifest}"
        );
        let cargo = read("Cargo.toml");
        assert!(cargo.contains("name = \"orders-rotator\""), "{cargo}");
        assert!(!cargo.contains("\"../..\""), "{cargo}");
        assert!(read(".cargo/config.toml").contains("stack-size"));
        assert!(scaffold(World::Rotator, "orders-rotator", tmp.path(), &sdk).is_err());
        assert!(scaffold(World::Rotator, "Bad Name", tmp.path(), &sdk).is_err());
    }
}
