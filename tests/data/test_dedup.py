"""Bloom filter sizing and false-positive rate; MinHash recall/precision on planted near duplicates; decontamination."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainforge.data import minhash as M
from trainforge.data.bloom import BloomFilter, ExactHashSet, digest, optimal_bits
from trainforge.data.decontaminate import contaminated
from trainforge.data.synthetic import planted_corpus


@pytest.mark.parametrize("p", [1e-2, 1e-3])
def test_bloom_false_positive_rate_within_bound_and_memory_near_optimum(p):
    n = 20_000
    bf = BloomFilter(n, p)
    keys = [digest(f"doc {i}") for i in range(n)]
    assert not bf.seen_before(keys).any()  # no false negatives possible, no key seen twice
    assert bf.contains(keys).all()
    optimum_bytes = -n * math.log(p) / math.log(2) ** 2 / 8
    assert bf.nbytes <= 1.05 * optimum_bytes
    measured = bf.measured_fp_rate(probes=100_000)
    # binomial noise on 100k probes is ~sqrt(p/1e5); 1.5x p + 4 sigma never fails by chance
    assert measured <= 1.5 * p + 4 * math.sqrt(p / 100_000), measured
    assert bf.expected_fp_rate() == pytest.approx(p, rel=0.1)


def test_bloom_persists_and_dedups_a_later_batch(tmp_path):
    bf = BloomFilter(1000, 1e-6)
    assert list(bf.seen_before([digest("a"), digest("b"), digest("a")])) == [False, False, True]
    bf.save(tmp_path / "seen")
    again = BloomFilter.open_or_create(tmp_path / "seen", 1000, 1e-6)
    assert list(again.seen_before([digest("b"), digest("c")])) == [True, False]
    assert again.inserted == 5 and optimal_bits(1000, 1e-6) == again.m


def test_exact_hash_mode_has_no_false_positives():
    s = ExactHashSet()
    assert list(s.seen_before([digest(str(i)) for i in range(1000)] + [digest("7")])) == [False] * 1000 + [True]


@pytest.fixture(scope="module")
def corpus():
    # 100–400 characters, 1–2 substituted: every planted near copy has 5-gram Jaccard ≥ 0.8 with its original
    return planted_corpus(3000, seed=3, dup_share=0.2)


def _recall_precision(corpus, clusters):
    root = {i: c[0] for c in clusters for i in c}
    truth = corpus.duplicate_pairs()
    found = sum(1 for o, i in truth if root.get(i, -1) == root.get(o, -2))
    # a wrongly merged document is one whose cluster mixes ground-truth families
    wrong = sum(1 for c in clusters for i in c if corpus.original[i] != corpus.original[c[0]])
    marked = sum(len(c) - 1 for c in clusters)
    return found / len(truth), 1 - wrong / max(marked, 1)


def test_minhash_recall_and_precision_on_planted_pairs(corpus):
    params = M.MinHashParams()
    sigs = M.signatures(corpus.texts, params)
    bands, rows = M.choose_bands_rows(0.8, params.num_perm)
    assert M.detection_probability(0.8, bands, rows) >= 0.99 and bands * rows <= params.num_perm
    clusters, info = M.near_duplicate_clusters(corpus.texts, sigs, 0.8, bands, rows, params.ngram)
    recall, precision = _recall_precision(corpus, clusters)
    assert recall >= 0.99 and precision >= 0.999, (recall, precision, info)


def test_short_documents_are_deduplicated():
    short = ["好", "质量不错", "很好很好", "还行吧", "不推荐!"]
    texts = short + short  # each short doc twice
    sigs = M.signatures(texts, M.MinHashParams())
    clusters, _ = M.near_duplicate_clusters(texts, sigs, 0.8, 21, 6, 5)
    assert sorted(clusters) == [[i, i + len(short)] for i in range(len(short))]


def test_signatures_do_not_depend_on_batching_or_sharding(corpus):
    texts = corpus.texts[:400]
    whole = M.signatures(texts, M.MinHashParams())
    in_shards = np.concatenate([M.signatures(texts[:123], M.MinHashParams(), batch_chars=500),
                                M.signatures(texts[123:], M.MinHashParams())])
    assert np.array_equal(whole, in_shards)


def test_word_ngrams_for_non_cjk_text():
    a = "the quick brown fox jumps over the lazy dog near the river bank today"
    b = a.replace("lazy", "sleepy")
    c = "completely different words about something else entirely and nothing more here"
    sigs = M.signatures([a, b, c], M.MinHashParams(ngram=3))
    est = (sigs[0] == sigs[1]).mean()
    exact = M.jaccard(M.shingle_set(a, 3), M.shingle_set(b, 3))
    assert abs(est - exact) < 0.15 and (sigs[0] == sigs[2]).mean() < 0.1


def test_keep_policies():
    texts = ["短", "更长的一个", "中等长"]
    assert M.keep_one([0, 1, 2], "first", texts, None) == 0
    assert M.keep_one([0, 1, 2], "longest", texts, None) == 1
    assert M.keep_one([0, 1, 2], "quality", texts, [0.1, 0.2, 0.9]) == 2


def test_s_curve_is_monotone():
    curve = M.s_curve(*M.choose_bands_rows(0.8, 128))
    values = list(curve.values())
    assert values == sorted(values) and set(curve) == {"0.5", "0.7", "0.8", "0.9"}


def test_decontamination_finds_shared_long_ngrams():
    test = ["这家酒店的早餐非常丰富，服务员态度也很好，下次还来"]
    train = ["我觉得这家酒店的早餐非常丰富，服务员态度也很好", "完全不同的一条评论内容，没有任何重叠部分呢", "这家酒店"]
    assert list(contaminated(train, test, 13)) == [True, False, False]


def test_bloom_filters_built_by_two_workers_merge_into_the_filter_of_both():
    from trainforge.data.bloom import BloomFilter

    keys = [digest(f"doc {i}") for i in range(4000)]
    whole, a, b = (BloomFilter(5000, 1e-4) for _ in range(3))
    whole.add(keys)
    a.add(keys[:2500])  # overlapping halves, as two workers' shards of a corpus with duplicates
    b.add(keys[2000:])
    merged = a.merge(b)
    assert np.array_equal(merged.bits, whole.bits)
    assert merged.contains(keys).all()
    with pytest.raises(Exception, match="different shapes"):
        merged.merge(BloomFilter(100, 1e-2))
