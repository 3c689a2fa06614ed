from otter.test_files import test_case

OK_FORMAT = False

name = "attention_step"
points = None

@test_case(points=1, hidden=False)
def test_attention_step_small(attention_step):
    from companion.exercises import bahdanau_attention as ex
    ex.check_attention_step_small(attention_step)

