//! Config loader: random text and mutations of the real configs are accepted or refused, never a panic.

use super::*;

/// The config texts mutations start from: the shipped gateway.toml and the
/// integration tests' config.
fn config_seeds() -> &'static [String; 2] {
    static SEEDS: OnceLock<[String; 2]> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let shipped =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.toml"))
                .expect("gateway.toml");
        let test = config_text("127.0.0.1:9".parse().unwrap(), "");
        [shipped, test]
    })
}

/// Values of every TOML type, some of them near what the keys expect.
const VALUES: &[&str] = &[
    "\"x\"",
    "\"\"",
    "42",
    "0",
    "-1",
    "9223372036854775807",
    "99999999999999999999",
    "1.5",
    "nan",
    "-inf",
    "true",
    "false",
    "[]",
    "[1, \"a\"]",
    "{}",
    "{ a = 1 }",
    "1979-05-27T07:32:00Z",
    "07:32:00",
    "\"0s\"",
    "\"-5m\"",
    "\"1h 30m\"",
    "\"999999999999h\"",
    "\"\u{1F4A5}\"",
    "\"\\u00e9\"",
    "'''multi\nline'''",
    "\"/\"",
    "\"*\"",
    "\"0.0.0.0:0\"",
    "\"[::1]:99999\"",
    "\"https://\"",
    "\"http://\u{e9}/\"",
    "\"{share}\"",
    "\"/hls/{share}/{share}\"",
    "[\"/a/\", \"/b/\"]",
    "\"session\"",
    "\"token\"",
    "\"remote\"",
    "\"127.0.0.0/33\"",
    "=",
    "",
];

/// One change to a config text's lines.
#[derive(Debug, Clone)]
enum Mutation {
    Delete(Index),
    Duplicate(Index),
    Swap(Index, Index),
    /// Another value, of any type, for a `key = value` line.
    Retype(Index, &'static str),
    /// A commented-out line put in force.
    Uncomment(Index),
    /// A line of random text.
    Insert(Index, String),
    /// The text cut at a byte (moved back to a character boundary).
    Truncate(Index),
    /// A character put anywhere in the text.
    Inject(Index, char),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => any::<Index>().prop_map(Mutation::Delete),
        2 => any::<Index>().prop_map(Mutation::Duplicate),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
        4 => (any::<Index>(), select(VALUES)).prop_map(|(a, v)| Mutation::Retype(a, v)),
        4 => any::<Index>().prop_map(Mutation::Uncomment),
        1 => (any::<Index>(), "[\\[\\]a-z_.=\"' 0-9{},#-]{0,30}").prop_map(|(a, s)| Mutation::Insert(a, s)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), any::<char>()).prop_map(|(a, c)| Mutation::Inject(a, c)),
    ]
}

fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut text_cut: Option<String> = None;
    for mutation in mutations {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match mutation {
            Mutation::Delete(at) => {
                lines.remove(at.index(n));
            }
            Mutation::Duplicate(at) => {
                let at = at.index(n);
                let line = lines[at].clone();
                lines.insert(at, line);
            }
            Mutation::Swap(a, b) => lines.swap(a.index(n), b.index(n)),
            Mutation::Retype(at, value) => {
                // The nearest `key = value` line from `at` on.
                let start = at.index(n);
                if let Some(i) = (0..n)
                    .map(|k| (start + k) % n)
                    .find(|&i| !lines[i].trim_start().starts_with('#') && lines[i].contains('='))
                {
                    let eq = lines[i].find('=').unwrap();
                    lines[i] = format!("{}= {value}", &lines[i][..eq]);
                }
            }
            Mutation::Uncomment(at) => {
                let start = at.index(n);
                if let Some(i) = (0..n)
                    .map(|k| (start + k) % n)
                    .find(|&i| lines[i].trim_start().starts_with('#'))
                {
                    let line = lines[i].trim_start();
                    let line = line.trim_start_matches('#').trim_start();
                    lines[i] = line.to_string();
                }
            }
            Mutation::Insert(at, line) => lines.insert(at.index(n + 1), line.clone()),
            Mutation::Truncate(at) => {
                let joined = lines.join("\n");
                let mut cut = at.index(joined.len() + 1);
                while !joined.is_char_boundary(cut) {
                    cut -= 1;
                }
                text_cut = Some(joined[..cut].to_string());
                break;
            }
            Mutation::Inject(at, c) => {
                let i = at.index(n);
                let line = &mut lines[i];
                let mut pos = at.index(line.len() + 1);
                while !line.is_char_boundary(pos) {
                    pos -= 1;
                }
                line.insert(pos, *c);
            }
        }
    }
    text_cut.unwrap_or_else(|| lines.join("\n"))
}

static CONFIGS_ACCEPTED: AtomicU64 = AtomicU64::new(0);
static RUNTIMES_BUILT: AtomicU64 = AtomicU64::new(0);

/// Loads `text` as a config in `dir`, and builds its runtime when the
/// settings are accepted; neither step may panic.
fn load_and_build(text: &str, dir: &Path, tokio: &tokio::runtime::Runtime) {
    let path = dir.join("gateway.toml");
    if let Ok(loaded) = Settings::from_toml(text, &path) {
        CONFIGS_ACCEPTED.fetch_add(1, Ordering::Relaxed);
        if tokio.block_on(Runtime::from_loaded(loaded, None)).is_ok() {
            RUNTIMES_BUILT.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Mutations of the real configs (lines deleted, repeated, swapped, put in
/// force, retyped, cut off) are accepted or refused, never a panic.
#[test]
fn config_mutations_of_gateway_toml_never_panic() {
    let dir = config_dir();
    let tokio = current_thread();
    CONFIGS_ACCEPTED.store(0, Ordering::Relaxed);
    RUNTIMES_BUILT.store(0, Ordering::Relaxed);
    check(
        "config_mutations_of_gateway_toml_never_panic",
        DEFAULT_CONFIG_CASES,
        (any::<bool>(), prop::collection::vec(mutation(), 1..6)),
        |(shipped, mutations)| {
            let seed = &config_seeds()[usize::from(!shipped)];
            let text = mutate(seed, &mutations);
            load_and_build(&text, dir.path(), &tokio);
            Ok(())
        },
    );
    eprintln!(
        "properties::config_mutations_of_gateway_toml_never_panic: {} accepted, {} runtimes built",
        CONFIGS_ACCEPTED.load(Ordering::Relaxed),
        RUNTIMES_BUILT.load(Ordering::Relaxed)
    );
}

/// Random text, TOML-shaped or not, is accepted or refused, never a panic.
#[test]
fn config_random_text_never_panics() {
    let dir = config_dir();
    let tokio = current_thread();
    let tomlish = prop::collection::vec(
        prop_oneof![
            select(
                &[
                    "[server]\n",
                    "[[route]]\n",
                    "[[embed]]\n",
                    "[embed.token]\n",
                    "[session]\n",
                    "[upstream]\n",
                    "[session.allowlist]\n",
                    "prefix = ",
                    "access = ",
                    "src = ",
                    "url = ",
                    "cookie = ",
                    "listen = ",
                    "kind = ",
                    "key = ",
                    "acl = ",
                    "file = ",
                    "\"",
                    "'",
                    "=",
                    "\n",
                    " ",
                    "#",
                    "[",
                    "]",
                    "{",
                    "}",
                    ",",
                    ".",
                    "\\",
                    "\u{e9}",
                    "\u{1F4A5}",
                    "\r\n",
                    "\t",
                    "\"\"\"",
                    "0",
                    "1e9",
                    "true",
                ][..]
            )
            .prop_map(str::to_string),
            select(VALUES).prop_map(str::to_string),
            "[a-z_]{1,8}",
        ],
        0..40,
    )
    .prop_map(|pieces| pieces.concat());
    check(
        "config_random_text_never_panics",
        DEFAULT_CONFIG_CASES,
        prop_oneof![3 => tomlish, 1 => any::<String>()],
        |text| {
            load_and_build(&text, dir.path(), &tokio);
            Ok(())
        },
    );
}
