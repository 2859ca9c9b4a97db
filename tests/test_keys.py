"""The MediaWiki key model against MediaWiki's own rules (MemcachedBagOStuff,
BagOStuff::makeFallbackKey, WANObjectCache, MediumSpecificBagOStuff), and the key
templates built on it. Expected keys are written out by hand from the PHP source."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest
from scipy import stats

from bench.scenario import keys as k
from bench.scenario.distributions import Fixed, LogNormal, UniformSize


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("raw, escaped", [
    ("Main Page", "Main_Page"),                 # strtr( $component, ' ', '_' )
    ("a:b", "a%3Ab"),                           # ':' is the delimiter
    ("50%", "50%25"),                           # '%' is the escape character
    ("#top", "%23top"),                         # '#' marks hashed components
    ("Zürich", "Z%C3%BCrich"),                  # non-ASCII: rawurlencode, per UTF-8 byte
    ("tab\there\n", "tab%09here%0A"),           # control characters
    ("\x7f", "%7F"),
    ("!\"$&'()*+,-./;<=>?@[\\]^_`{|}~", "!\"$&'()*+,-./;<=>?@[\\]^_`{|}~"),  # kept as is
    (12345, "12345"),
    (None, ""),
])
def test_escaping_is_memcached_bagostuff(raw, escaped: str) -> None:
    """MemcachedBagOStuff::makeKeyInternal: spaces to '_', then every byte outside
    0x21-0x7e and '#', '%', ':' rawurlencode()d in upper-case hex."""
    assert k.escape_component(raw) == escaped


def test_make_key_and_make_global_key() -> None:
    assert k.make_key("enwiki", "pagecontent", 123, "Main Page") == "enwiki:pagecontent:123:Main_Page"
    assert k.make_global_key("userblock", 42) == "global:userblock:42"


def test_long_component_is_hashed_under_the_1_44_rule() -> None:
    """205 - 6 (enwiki) - 2 components = 197 bytes left; 'pagecontent' leaves 186; the
    300-byte component is longer, so it becomes '#' . md5(component)."""
    title = "x" * 300
    assert k.make_key("enwiki", "pagecontent", title) == f"enwiki:pagecontent:#{md5(title)}"


def test_short_component_left_after_hashing_a_long_one() -> None:
    """Only the component that overflows is hashed; later short ones stay readable."""
    assert k.make_key("enwiki", "g", "y" * 300, "tail") == f"enwiki:g:#{md5('y' * 300)}:tail"


def test_many_medium_components_make_a_bagostuff_long_key() -> None:
    """Ten 30-byte components: 189 bytes left at first, so six fit; by the seventh fewer
    than 33 are left and nothing is hashed, so charsLeft goes negative and the whole key
    becomes '<keyspace>:BagOStuff-long-key:##' . md5(implode(':', components))."""
    components = [f"{i}" * 30 for i in range(10)]
    expected = "enwiki:BagOStuff-long-key:##" + md5(":".join(components))
    assert k.make_key("enwiki", *components) == expected


def test_escaping_counts_towards_the_length() -> None:
    """The length rule sees escaped components: 70 '#' are 210 bytes once escaped, and
    the md5 is of the escaped text."""
    assert k.make_key("enwiki", "g", "#" * 70) == f"enwiki:g:#{md5('%23' * 70)}"
    assert len(k.make_key("enwiki", "g", "#" * 60)) == len("enwiki:g:") + 180


def test_keys_at_the_budget_are_untouched() -> None:
    """A key of exactly KEY_BUDGET (205) bytes is sent as is; one byte more is hashed."""
    fits = "z" * (k.KEY_BUDGET - len("enwiki:g:"))
    assert k.make_key("enwiki", "g", fits) == f"enwiki:g:{fits}"
    assert k.make_key("enwiki", "g", fits + "z") == f"enwiki:g:#{md5(fits + 'z')}"


def test_1_45_rule_hashes_the_whole_key_with_sha256() -> None:
    """BagOStuff::makeFallbackKey: '<keyspace>:<keygroup>:#' . sha256(key); the keygroup
    is unescaped ('%3A' -> ':'); a keygroup too long for that gives BagOStuff-long-key."""
    long_key = "enwiki:pagecontent:" + "x" * 300
    assert k.make_key("enwiki", "pagecontent", "x" * 300, rules="1.45") == f"enwiki:pagecontent:#{sha256(long_key)}"
    assert k.make_key("enwiki", "a:b", "x" * 300, rules="1.45") == f"enwiki:a:b:#{sha256('enwiki:a%3Ab:' + 'x' * 300)}"
    group = "g" * 150
    assert k.make_key("enwiki", group, "x" * 100, rules="1.45") == \
        f"enwiki:BagOStuff-long-key:##{sha256(f'enwiki:{group}:' + 'x' * 100)}"


@pytest.mark.parametrize("rules", ["1.44", "1.45"])
def test_every_key_fits_memcached(rules: str) -> None:
    """Whatever the components, makeKey stays within 205 bytes and a WANCache sister key
    within memcached's 250."""
    rng = np.random.default_rng(5)
    for _ in range(200):
        parts = ["c" * int(n) for n in rng.integers(1, 400, size=rng.integers(1, 12))]
        key = k.make_key("commonswiki", *parts, rules=rules)
        assert len(key) <= k.KEY_BUDGET
        assert len(k.wan_sister_key(key, "v")) <= k.MEMCACHED_KEY_LIMIT


def test_sister_keys_share_the_hash_stop_part() -> None:
    """WANObjectCache::makeSisterKey with mcrouter's hash stop: every sister of a key
    routes by 'WANCache:<base>', so value, check, mutex, interim and cool-off keys land
    on one server."""
    base = k.make_key("enwiki", "revision-row-1.29", 1234)
    sisters = [k.wan_sister_key(base, t) for t in k.SISTER_TYPES]
    assert sisters[0] == "WANCache:enwiki:revision-row-1.29:1234|#|v"
    assert {k.hash_stop_part(s) for s in sisters} == {f"WANCache:{base}"}
    assert k.hash_stop_part("enwiki:no-stop") == "enwiki:no-stop"
    assert k.wan_sister_key(base, "t", scheme="hash_tag") == "WANCache:{enwiki:revision-row-1.29:1234}:t"


def test_wancache_constants() -> None:
    assert k.HOLDOFF_TTL == 11 == k.MAX_COMMIT_DELAY + k.MAX_READ_LAG + 1
    assert (k.LOCK_TTL, k.SEGMENTATION_SIZE, k.COMPRESSION_THRESHOLD) == (10, 917_504, 1500)
    assert list(k.SISTER_TYPES) == ["v", "t", "m", "i", "c"]


@pytest.mark.parametrize("size, chunks", [
    (0, 0), (917_504, 0), (917_505, 2), (2 * 917_504, 2), (2 * 917_504 + 1, 3), (10 * 2**20, 12),
])
def test_segment_count_around_the_threshold(size: int, chunks: int) -> None:
    """MediumSpecificBagOStuff: values up to 917,504 bytes are stored whole; larger ones
    as ceil(size / 917504) chunks plus the main key holding the chunk list."""
    writes = k.segment_keys("enwiki:parsercache:1", size)
    if chunks == 0:
        assert writes == [("enwiki:parsercache:1", size)]
        return
    assert len(writes) == chunks + 1 and writes[-1][0] == "enwiki:parsercache:1"
    assert sum(n for _, n in writes[:-1]) == size
    assert all(n == 917_504 for _, n in writes[:-2])


def test_segment_keys_are_global_and_escape_the_base_key() -> None:
    """Chunk keys are makeGlobalKey('segment', $key, sha1(chunk)): the sister key is one
    escaped component, so its '|#|' becomes '|%23|' and chunks spread over the ring."""
    base = k.wan_sister_key(k.make_key("enwiki", "page", 1), "v")
    writes = k.segment_keys(base, 917_505)
    pattern = r"global:segment:WANCache%3Aenwiki%3Apage%3A1\|%23\|v:[0-9a-f]{40}"
    assert all(re.fullmatch(pattern, key) for key, _ in writes[:-1])
    assert writes[0][0] != writes[1][0]
    assert writes == k.segment_keys(base, 917_505)  # deterministic
    # PHP serialize() of the segment list: 'O:8:"stdClass":2:{s:14:"__svc_schema__";
    # s:11:"CAYCDAgCDw4";s:10:"__hashes__";a:2:{i:0;s:40:"...";i:1;s:40:"...";}}'
    assert writes[-1] == (base, 188)


def test_template_keys_are_deterministic_per_index() -> None:
    """The same index gives the same key in every call and every instance; different
    indices give different keys (so a Zipf over indices is a Zipf over keys)."""
    template = k.KeyTemplate("{wiki}:pagecontent:{rev}", {"rev": k.Index(offset=1_000_000_000)})
    indices = np.array([5, 3, 5, 10**7])
    first = template.keys(indices)
    assert first[0] == first[2] and len(set(first)) == 3
    assert first == k.KeyTemplate("{wiki}:pagecontent:{rev}", {"rev": k.Index(offset=1_000_000_000)}).keys(indices)
    assert re.fullmatch(r"[a-z]+wiki:pagecontent:1010000000", first[3])
    assert len(set(template.keys(np.arange(10_000)))) == 10_000


def test_template_wiki_per_index_follows_the_weights() -> None:
    """H0 (chi-square): the wiki fixed to each of 50,000 consecutive indices is drawn
    with WIKIS_DEFAULT's weights."""
    wikis = [key.split(":")[0] for key in k.KeyTemplate("{wiki}:x:{id}").keys(np.arange(50_000))]
    values = list(k.WIKIS_DEFAULT.values)
    observed = np.bincount([values.index(w) for w in wikis], minlength=len(values))
    weights = np.array(k.WIKIS_DEFAULT.weights, dtype=float)
    assert stats.chisquare(observed, weights / weights.sum() * observed.sum()).pvalue > 1e-3


def test_template_takes_per_operation_choices() -> None:
    """Positions from Choice.sample override the per-index wiki."""
    template = k.KeyTemplate("{wiki}:x:{id}")
    positions = k.WIKIS_DEFAULT.sample(np.random.default_rng(1), 3)
    assert template.keys([7, 7, 7], {"wiki": positions}) == [
        f"{k.WIKIS_DEFAULT.values[p]}:x:7" for p in positions]
    with pytest.raises(ValueError, match="choices: id is not a Choice variable"):
        template.keys([1], {"id": np.array([0])})


def test_template_padding_and_length_rule() -> None:
    """A Padded variable has a length drawn per index from its size distribution;
    keys over the budget get MediaWiki's rule, like make_key."""
    template = k.KeyTemplate("enwiki:page:{title}", {"title": k.Padded(UniformSize(10, 400))})
    keys = template.keys(np.arange(2000))
    assert keys == template.keys(np.arange(2000))
    assert all(len(key) <= k.KEY_BUDGET for key in keys)
    hashed = [key for key in keys if key.startswith("enwiki:page:#")]
    assert hashed and all(re.fullmatch(r"enwiki:page:#[0-9a-f]{32}", key) for key in hashed)
    fixed = k.KeyTemplate("enwiki:page:{title}", {"title": k.Padded(Fixed(12))}).keys([3, 12345])
    assert fixed == ["enwiki:page:3xxxxxxxxxxx", "enwiki:page:12345xxxxxxx"]
    lengths = k.KeyTemplate("global:t:{t}", {"t": k.Padded(LogNormal.from_median_p99(20, 60))}).keys(np.arange(4001))
    assert np.median([len(key) - len("global:t:") for key in lengths]) == pytest.approx(20, abs=1)


def test_template_escapes_literals_and_values() -> None:
    template = k.KeyTemplate("global:user name:{who}", {"who": k.Choice(("A B", "c:d"))})
    assert set(template.keys(np.arange(50))) == {"global:user_name:A_B", "global:user_name:c%3Ad"}
    assert k.KeyTemplate("enwiki:fixed").keys([1, 2]) == ["enwiki:fixed", "enwiki:fixed"]
    assert k.KeyTemplate("global:userblock:{id}", rules="1.45").keys([9]) == ["global:userblock:9"]


@pytest.mark.parametrize("template, variables, message", [
    ("enwiki", None, "expected '<keyspace>:<keygroup>"),
    ("enwiki::x", None, "no empty part"),
    ("{wiki}:x:{id!r}", None, "plain {name} variables"),
    ("{wiki}:x:{id:>5}", None, "balanced {name} variables"),
    ("{wiki}:x:{0}", None, "plain {name} variables"),
    ("en wiki:x:{id}", None, "keyspace: expected a wiki ID"),
    ("{site}:x", {"site": k.Choice(("a:b",))}, "keyspace: expected a wiki ID"),
    ("{wiki}:x:{id}", {"rev": k.Index()}, "variables: rev not used"),
])
def test_bad_templates_say_what_was_expected(template: str, variables, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        k.KeyTemplate(template, variables)


@pytest.mark.parametrize("make, message", [
    (lambda: k.make_key("enwiki"), "at least a key group"),
    (lambda: k.make_key("en:wiki", "x"), "keyspace: expected a wiki ID"),
    (lambda: k.make_key("enwiki", "x", rules="1.99"), "rules: expected '1.44' or '1.45'"),
    (lambda: k.wan_sister_key("k", "x"), "sister_type: expected one of v, t, m, i, c"),
    (lambda: k.wan_sister_key("k", "v", scheme="braces"), "scheme: expected"),
    (lambda: k.segment_keys("k", -1), "value_size: expected a whole number of bytes"),
    (lambda: k.Choice(()), "values: expected at least one string"),
    (lambda: k.Choice(("a", "b"), (1,)), "weights: expected one weight per value"),
])
def test_invalid_arguments_say_what_was_expected(make, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


def test_default_wikis_are_led_by_enwiki() -> None:
    weights = dict(zip(k.WIKIS_DEFAULT.values, k.WIKIS_DEFAULT.weights))
    assert max(weights, key=weights.get) == "enwiki"
    assert {"commonswiki", "wikidatawiki", "dewiki", "frwiki", "jawiki"} <= set(weights)
