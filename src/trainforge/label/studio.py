"""Label Studio's JSON, both ways: tasks with pre-annotations out, an export's annotations in.

The shapes (Label Studio's import/export format, text classification with <Choices>):

    labelling config   <View><Text name="text" value="$text"/>
                       <Choices name="sentiment" toName="text" choice="single"><Choice value="positive"/>…</Choices></View>
    task (import)      {"data": {"text": "…", "trainforge_id": "…"},
                        "predictions": [{"model_version": "…", "score": 0.93,
                                         "result": [{"from_name": "sentiment", "to_name": "text", "type": "choices",
                                                     "value": {"choices": ["positive"]}}]}]}
    export             [{"id": 7, "data": {…}, "annotations": [{"id": 3, "completed_by": 1, "was_cancelled": false,
                                                                "result": [<as above>]}, …], "predictions": […]}, …]

A prediction whose from_name/to_name do not name the config's <Choices>/<Text> is silently not shown in
Label Studio: that is why the config is written by the same code as the predictions, and why the ML backend
(serve/label_studio.py) reads the names from the project's config instead of assuming them.

Import resolves each task to one label: cancelled annotations are skipped (counted), the rest vote, the
majority wins when it holds more than `min_agreement` of the votes; a task whose votes tie, whose only labels
are outside the label set, or with no usable annotation is quarantined with its reason. Every annotation is
kept on the record (`label_studio.annotations`), so nothing a person entered is lost.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import quoteattr

from trainforge.errors import UserError


@dataclass(frozen=True)
class ChoiceSchema:
    """What a classification project's labelling config says: the control, the object, the choices."""

    from_name: str
    to_name: str
    labels: tuple[str, ...]
    text_key: str = "text"


def labelling_config(schema: ChoiceSchema) -> str:
    choices = "\n".join(f"    <Choice value={quoteattr(label)}/>" for label in schema.labels)
    return (f"<View>\n  <Text name={quoteattr(schema.to_name)} value={quoteattr('$' + schema.text_key)}/>\n"
            f"  <Choices name={quoteattr(schema.from_name)} toName={quoteattr(schema.to_name)} choice=\"single\" "
            f"showInline=\"true\">\n{choices}\n  </Choices>\n</View>\n")


def parse_labelling_config(xml: str, where: str = "label config") -> ChoiceSchema:
    """The first <Choices> and the <Text> it labels; a UserError when the config has none."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as e:
        raise UserError(f"{where}: not valid XML ({e})") from None
    choices = root.find(".//Choices")
    if choices is None or not choices.get("name") or not choices.get("toName"):
        raise UserError(f"{where}: no <Choices name=… toName=…> control; trainforge labels text classification projects")
    to_name = choices.get("toName")
    text = next((t for t in root.iter("Text") if t.get("name") == to_name), None)
    text_key = (text.get("value") or "$text").lstrip("$") if text is not None else "text"
    labels = tuple(c.get("value") for c in choices.iter("Choice") if c.get("value") is not None)
    return ChoiceSchema(choices.get("name"), to_name, labels, text_key)


def prediction(label_probs: dict[str, float], schema: ChoiceSchema, model_version: str) -> dict:
    """One pre-annotation: the most likely label, scored by its probability."""
    label = max(label_probs, key=label_probs.get)
    return {"model_version": model_version, "score": round(float(label_probs[label]), 6),
            "result": [{"from_name": schema.from_name, "to_name": schema.to_name, "type": "choices",
                        "value": {"choices": [label]}}]}


def task(record: dict, schema: ChoiceSchema, pred: dict | None, query_score: float | None = None) -> dict:
    """A Label Studio task from a data-stage record; the record's id and other fields ride along in `data`."""
    data = {schema.text_key: record["text"], "trainforge_id": record["id"]}
    data.update({k: v for k, v in record.items() if k not in ("id", "text", "label") and isinstance(v, (str, int, float, bool))})
    out = {"data": data}
    if pred is not None:
        out["predictions"] = [pred]
    if query_score is not None:
        out["meta"] = {"query_score": round(float(query_score), 6)}
    return out


# --------------------------------------------------------------------------- import


@dataclass
class Imported:
    records: list[dict] = field(default_factory=list)
    quarantined: list[dict] = field(default_factory=list)
    tasks: int = 0
    annotations: int = 0
    cancelled: int = 0
    outside_label_set: int = 0
    no_choice: int = 0
    multi_annotated: int = 0
    agreement_sum: float = 0.0

    def summary(self) -> dict:
        reasons = Counter(q["reason"] for q in self.quarantined)
        return {"tasks": self.tasks, "records": len(self.records), "quarantined": len(self.quarantined),
                "quarantine_reasons": dict(reasons), "annotations": self.annotations, "cancelled": self.cancelled,
                "outside_label_set": self.outside_label_set, "no_choice": self.no_choice,
                "multi_annotated_tasks": self.multi_annotated,
                "mean_agreement": round(self.agreement_sum / self.multi_annotated, 4) if self.multi_annotated else None}


def _choices(annotation: dict, schema: ChoiceSchema) -> list[str]:
    out = []
    for r in annotation.get("result") or []:
        if r.get("type", "choices") == "choices" and r.get("from_name") == schema.from_name:
            out.extend((r.get("value") or {}).get("choices") or [])
    return out


def _annotator(annotation: dict):
    who = annotation.get("completed_by")
    return who.get("email", who.get("id")) if isinstance(who, dict) else who


def import_export(path: Path | str, schema: ChoiceSchema, min_agreement: float = 0.5) -> Imported:
    """Read a Label Studio JSON export (a list of tasks) into data-stage records and quarantined tasks."""
    path = Path(path)
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not a readable Label Studio JSON export ({e}); export the project as JSON") from None
    if not isinstance(tasks, list):
        raise UserError(f"{path}: a Label Studio JSON export is a list of tasks; got {type(tasks).__name__} (use the JSON, not JSON-MIN, export)")
    out, allowed = Imported(), set(schema.labels)
    for n, t in enumerate(tasks, 1):
        out.tasks += 1

        def quarantine(reason: str, **extra) -> None:
            out.quarantined.append({"source": str(path), "line": n, "task": t.get("id") if isinstance(t, dict) else None,
                                    "reason": reason, **extra, "raw": json.dumps(t, ensure_ascii=False, default=str)[:2000]})

        if not isinstance(t, dict) or not isinstance(t.get("data"), dict):
            quarantine("not_a_task")
            continue
        annotations = t.get("annotations") or []
        out.annotations += len(annotations)
        text = t["data"].get(schema.text_key)
        if not isinstance(text, str):
            quarantine("no_text", detail=f"data.{schema.text_key} is missing")
            continue
        kept, votes, outside = [], Counter(), []
        for a in annotations:
            entry = {"id": a.get("id"), "annotator": _annotator(a)}
            if a.get("was_cancelled"):
                out.cancelled += 1
                kept.append({**entry, "cancelled": True})
                continue
            chosen = _choices(a, schema)
            if len(chosen) != 1:
                out.no_choice += 1
                kept.append({**entry, "choices": chosen, "used": False})
                continue
            label = chosen[0]
            if label not in allowed:
                out.outside_label_set += 1
                outside.append(label)
                kept.append({**entry, "label": label, "used": False})
                continue
            votes[label] += 1
            kept.append({**entry, "label": label, "used": True})
        total = sum(votes.values())
        if not total:
            if outside:
                quarantine("label_not_in_set", labels=sorted(set(outside)), annotations=kept)
            else:
                quarantine("no_annotation", annotations=kept)
            continue
        ranked = votes.most_common()
        share = ranked[0][1] / total
        if total > 1:
            out.multi_annotated += 1
            out.agreement_sum += share
        if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
            quarantine("tie", votes=dict(votes), annotations=kept)
            continue
        if share <= min_agreement and total > 1:
            quarantine("low_agreement", votes=dict(votes), agreement=round(share, 4), annotations=kept)
            continue
        rid = t["data"].get("trainforge_id") or f"label-studio:{t.get('id', n)}"
        extra = {k: v for k, v in t["data"].items() if k not in (schema.text_key, "trainforge_id", "label", "id", "text", "source")}
        source = t["data"].get("source") or f"label-studio:{path.name}"  # the pool's own source, when the task carried it
        out.records.append({"id": str(rid), "text": text, "label": ranked[0][0], "source": str(source),
                            **extra, "label_studio": {"task": t.get("id"), "agreement": round(share, 4),
                                                      "votes": dict(votes), "annotations": kept}})
    return out
