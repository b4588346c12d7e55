from stratos_teacher_eval.main import run

run()
