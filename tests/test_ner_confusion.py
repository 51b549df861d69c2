"""The span-level per-type confusion matrix of an NER evaluation, against a hand count."""

from mmie.data.schema import Example, Span
from mmie.tasks.ner import NERTask


def test_type_confusion_hand_count():
    task = NERTask(["O", "B-LOC", "I-LOC", "B-PER", "I-PER"])
    examples = [Example("a", ["w1", "w2", "w3", "w4"], entities=[Span(0, 1, "PER"), Span(2, 4, "LOC")]),
                Example("b", ["v1", "v2"], entities=[Span(0, 2, "LOC")])]
    preds = [{"tags": [], "entities": [Span(0, 1, "LOC"), Span(1, 2, "PER")]},   # wrong type, spurious; LOC missed
             {"tags": [], "entities": [Span(0, 2, "LOC")]}]                      # correct
    conf = task.type_confusion(examples, preds)
    assert conf["labels"] == ["LOC", "PER", "O"]
    #            pred: LOC PER  O
    assert conf["matrix"] == [[1, 0, 1],   # gold LOC: 1 correct, 1 missed
                              [1, 0, 0],   # gold PER: predicted as LOC
                              [0, 1, 0]]   # no gold span: a spurious PER
    # every gold span appears exactly once in its row
    assert sum(map(sum, conf["matrix"][:2])) == 3
