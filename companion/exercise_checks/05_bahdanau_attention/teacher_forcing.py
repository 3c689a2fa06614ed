from otter.test_files import test_case

OK_FORMAT = False

name = "teacher_forcing"
points = None

@test_case(points=1, hidden=False)
def test_teacher_forcing_small(teacher_forcing_inputs):
    from companion.exercises import bahdanau_attention as ex
    ex.check_teacher_forcing_small(teacher_forcing_inputs)

