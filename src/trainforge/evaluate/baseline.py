"""The simple baseline every classifier is printed beside: TF-IDF + logistic regression.

Character 1–3-grams, so it works on Chinese (no word segmentation) as well as on spaced scripts.
"""

from __future__ import annotations


def tfidf_lr_pipeline(seed: int):
    """The baseline as an unfitted scikit-learn pipeline (cross-validation, label-issue detection)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(
        TfidfVectorizer(analyzer="char", ngram_range=(1, 3), min_df=2, sublinear_tf=True, max_features=300_000),
        LogisticRegression(C=4.0, max_iter=2000, random_state=seed),
    )


def tfidf_lr_predict(train_texts: list[str], train_labels: list[str], test_texts: list[str], seed: int) -> list[str]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    pipe = make_pipeline(
        TfidfVectorizer(analyzer="char", ngram_range=(1, 3), min_df=2, sublinear_tf=True, max_features=300_000),
        LogisticRegression(C=4.0, max_iter=2000, random_state=seed),
    )
    pipe.fit(train_texts, train_labels)
    return list(pipe.predict(test_texts))


def tfidf_lr_probs(train_texts: list[str], train_labels: list[str], test_texts: list[str], labels: list[str], seed: int):
    """(N, K) probabilities in the order of `labels` (a label the baseline never saw gets 0)."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    pipe = make_pipeline(
        TfidfVectorizer(analyzer="char", ngram_range=(1, 3), min_df=2, sublinear_tf=True, max_features=300_000),
        LogisticRegression(C=4.0, max_iter=2000, random_state=seed),
    )
    pipe.fit(train_texts, train_labels)
    seen = list(pipe.classes_)
    raw = pipe.predict_proba(test_texts)
    out = np.zeros((len(test_texts), len(labels)))
    for j, lab in enumerate(labels):
        if lab in seen:
            out[:, j] = raw[:, seen.index(lab)]
    return out
