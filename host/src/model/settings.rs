//! What the two settings types (`SourceSettings`, `DestinationSettings`) share: they are
//! flattened into the config's and the API's input and view types, and their defaults are
//! written once, in `impl Default`.

use std::sync::LazyLock;

/// A settings type flattened into another (`#[serde(flatten, deserialize_with =
/// "deserialize_flattened")]`): every key has a default, and every field serializes, so that the
/// default's JSON names every key.
pub trait FlattenedSettings:
    Default + serde::Serialize + serde::de::DeserializeOwned + 'static
{
    /// The type's name, which the reader hands serde as the name of the struct it reads.
    const NAME: &'static str;

    /// The settings' keys, in field order; implemented with `keys_of` in a `LazyLock`.
    fn keys() -> &'static [&'static str];
}

/// The keys of `Settings`' default as JSON, in field order, for a `LazyLock` of
/// `FlattenedSettings::keys`. Each key is leaked once, which is what a `'static` list of keys
/// read from a value costs.
pub fn keys_of<Settings: FlattenedSettings>() -> Vec<&'static str> {
    let text = serde_json::to_string(&Settings::default()).expect("the settings serialize");
    let mut keys: Vec<String> = match serde_json::from_str(&text) {
        Ok(serde_json::Value::Object(settings)) => settings.keys().cloned().collect(),
        _ => Vec::new(),
    };
    keys.sort_by_key(|key| text.find(&format!("\"{key}\":")));
    keys.into_iter()
        .map(|key| &*Box::leak(key.into_boxed_str()))
        .collect()
}

/// A `LazyLock` of a settings type's keys, for its `FlattenedSettings::keys`.
pub type Keys = LazyLock<Vec<&'static str>>;

/// Reads settings flattened into another type so that an error names its key. A flattened
/// value is buffered before it is read, and an error in a buffered value names no key: the
/// config's error would stop at `destinations[0]`.
pub fn deserialize_flattened<'de, D, Settings>(deserializer: D) -> Result<Settings, D::Error>
where
    D: serde::Deserializer<'de>,
    Settings: FlattenedSettings,
{
    struct Given;
    impl<'de> serde::de::Visitor<'de> for Given {
        type Value = serde_json::Map<String, serde_json::Value>;
        fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
            formatter.write_str("settings")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut given = serde_json::Map::new();
            while let Some((key, value)) = map.next_entry::<String, serde_json::Value>()? {
                given.insert(key, value);
            }
            Ok(given)
        }
    }
    use serde::de::Error;
    // Asking for a struct with the settings' keys takes exactly those from the enclosing map;
    // the enclosing type refuses whatever is left.
    let given = deserializer.deserialize_struct(Settings::NAME, Settings::keys(), Given)?;
    for (key, value) in &given {
        let alone = serde_json::json!({ key: value });
        serde_json::from_value::<Settings>(alone)
            .map_err(|error| D::Error::custom(format!("{key}: {error}")))?;
    }
    serde_json::from_value(serde_json::Value::Object(given)).map_err(D::Error::custom)
}

#[cfg(test)]
pub mod documented;
