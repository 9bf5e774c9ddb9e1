"""Math content for the sample crawl: small problems with random coefficients, explained in six languages.

Each problem generator returns the TeX of its formulas by name; the phrasebook says, per language, how a
worked solution, a lecture note or a forum answer talks about them. In the phrasebook `[[name]]` marks an
inline formula and a step of the form `@@name` a displayed one, so the page builder can render the same
content in any math encoding (MathJax, MathML, KaTeX, images with TeX in alt).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from fractions import Fraction

Formulas = dict[str, str]


def _term(coef: int, var: str, first: bool = False) -> str:
    """One signed term of a polynomial: `+ 3x`, `- x`, `2x` (first term without a leading plus)."""
    if coef == 0:
        return ""
    sign = "-" if coef < 0 else ("" if first else "+")
    mag = abs(coef)
    body = (str(mag) if mag != 1 or not var else "") + var
    return f"{sign} {body}".strip() if not first else f"{sign}{body}"


def _poly(*terms: tuple[int, str]) -> str:
    parts = []
    for coef, var in terms:
        part = _term(coef, var, first=not parts)
        if part:
            parts.append(part)
    return " ".join(parts) if parts else "0"


def _num(x: int) -> str:
    """A factor inside a product: negative numbers in parentheses."""
    return f"({x})" if x < 0 else str(x)


def _frac(f: Fraction) -> str:
    if f.denominator == 1:
        return str(f.numerator)
    sign = "-" if f < 0 else ""
    return f"{sign}\\frac{{{abs(f.numerator)}}}{{{f.denominator}}}"


def _coef(f: Fraction) -> str:
    """A coefficient in front of a variable: 1 is left out."""
    return "" if f == 1 else _frac(f)


def quadratic(rng: random.Random) -> Formulas:
    r1, r2 = rng.sample([v for v in range(-9, 10) if v != 0], 2)
    b, c = -(r1 + r2), r1 * r2
    disc = b * b - 4 * c
    return {
        "eq": f"{_poly((1, 'x^2'), (b, 'x'), (c, ''))} = 0",
        "disc_def": "D = b^2 - 4ac",
        "disc_val": f"D = {_num(b)}^2 - 4 \\cdot {_num(c)} = {disc}",
        "formula": f"x_{{1,2}} = \\frac{{-b \\pm \\sqrt{{D}}}}{{2a}} = \\frac{{{-b} \\pm {math.isqrt(disc)}}}{{2}}",
        "roots": f"x_1 = {max(r1, r2)}, \\quad x_2 = {min(r1, r2)}",
        "check_sum": f"x_1 + x_2 = {r1 + r2}",
        "check_prod": f"x_1 x_2 = {c}",
        "factored": f"(x {_term(-r1, '')})(x {_term(-r2, '')}) = 0",
        "general": "ax^2 + bx + c = 0",
        "a_ne_0": "a \\neq 0",
        "general_formula": "x = \\frac{-b \\pm \\sqrt{b^2 - 4ac}}{2a}",
    }


def derivative(rng: random.Random) -> Formulas:
    a, n = rng.randint(2, 9), rng.randint(3, 6)
    b, c = rng.choice([-7, -5, -3, -2, 2, 3, 4, 6]), rng.randint(1, 9)
    x0 = rng.randint(1, 3)
    value = a * n * x0 ** (n - 1) + b
    return {
        "func": f"f(x) = {_poly((a, f'x^{{{n}}}'), (b, 'x'), (c, ''))}",
        "rule": "\\frac{d}{dx} x^n = n x^{n-1}",
        "power_rule": "(x^n)' = n x^{n-1}",
        "linearity": "(af + bg)' = af' + bg'",
        "deriv": f"f'(x) = {_poly((a * n, f'x^{{{n - 1}}}'), (b, ''))}",
        "point": f"x = {x0}",
        "value": f"f'({x0}) = {a * n} \\cdot {x0}^{{{n - 1}}} {_term(b, '')} = {value}",
    }


def integral(rng: random.Random) -> Formulas:
    a, b, k = rng.randint(1, 9), rng.randint(1, 9), rng.randint(2, 5)
    val = Fraction(a * k**3, 3) + b * k
    return {
        "integral": f"\\int_0^{{{k}}} ({a if a > 1 else ''}x^2 + {b})\\,\\mathrm{{d}}x",
        "antideriv": f"F(x) = {_coef(Fraction(a, 3))}x^3 + {b if b > 1 else ''}x",
        "ftc": "\\int_a^b f(x)\\,\\mathrm{d}x = F(b) - F(a)",
        "value": f"F({k}) - F(0) = {_frac(Fraction(a, 3))} \\cdot {k}^3 + {b} \\cdot {k} = {_frac(val)}",
        "primitive": "F' = f",
    }


def series(rng: random.Random) -> Formulas:
    a, b, n = rng.randint(2, 9), rng.randint(1, 9), rng.choice([10, 12, 15, 20, 25, 30, 40, 50, 100])
    total = a * n * (n + 1) // 2 + b * n
    return {
        "sum": f"\\sum_{{k=1}}^{{{n}}} ({a}k + {b})",
        "gauss": "\\sum_{k=1}^{n} k = \\frac{n(n+1)}{2}",
        "split": f"{a} \\sum_{{k=1}}^{{{n}}} k + \\sum_{{k=1}}^{{{n}}} {b} = {a} \\cdot \\frac{{{n} \\cdot {n + 1}}}{{2}} + {b} \\cdot {n}",
        "result": f"S = {total}",
        "pairing": f"1 + {n} = 2 + {n - 1} = {n + 1}",
    }


def linear_system(rng: random.Random) -> Formulas:
    while True:
        x, y = rng.randint(-6, 6), rng.randint(-6, 6)
        a1, b1, a2, b2 = (rng.choice([-4, -3, -2, -1, 1, 2, 3, 4, 5]) for _ in range(4))
        det = a1 * b2 - a2 * b1
        if det != 0:
            break
    c1, c2 = a1 * x + b1 * y, a2 * x + b2 * y
    return {
        "eq1": f"{_poly((a1, 'x'), (b1, 'y'))} = {c1}",
        "eq2": f"{_poly((a2, 'x'), (b2, 'y'))} = {c2}",
        "det": f"\\Delta = a_1 b_2 - a_2 b_1 = {a1} \\cdot {_num(b2)} - {_num(a2)} \\cdot {_num(b1)} = {det}",
        "cramer": "x = \\frac{\\Delta_x}{\\Delta}, \\quad y = \\frac{\\Delta_y}{\\Delta}",
        "dx": f"\\Delta_x = {_num(c1)} \\cdot {_num(b2)} - {_num(c2)} \\cdot {_num(b1)} = {c1 * b2 - c2 * b1}",
        "dy": f"\\Delta_y = {_num(a1)} \\cdot {_num(c2)} - {_num(a2)} \\cdot {_num(c1)} = {a1 * c2 - a2 * c1}",
        "sol": f"x = {x}, \\quad y = {y}",
        "det_ne_0": "\\Delta \\neq 0",
    }


def dice(rng: random.Random) -> Formulas:
    s = rng.randint(3, 11)
    pairs = [(i, s - i) for i in range(1, 7) if 1 <= s - i <= 6]
    p = Fraction(len(pairs), 36)
    return {
        "event": f"X = {s}",
        "omega": "|\\Omega| = 6^2 = 36",
        "favourable": ", ".join(f"({i},{j})" for i, j in pairs),
        "count": f"|A| = {len(pairs)}",
        "prob": f"P(X = {s}) = \\frac{{{len(pairs)}}}{{36}}"
        + (f" = {_frac(p)}" if p.denominator != 36 else ""),
        "laplace": "P(A) = \\frac{|A|}{|\\Omega|}",
        "approx": f"P \\approx {float(p):.3f}",
    }


PROBLEMS: dict[str, Callable[[random.Random], Formulas]] = {
    "quadratic": quadratic,
    "derivative": derivative,
    "integral": integral,
    "series": series,
    "linear_system": linear_system,
    "dice": dice,
}

# Per language and problem: topic, statement, solution steps, theory for lecture notes.
PHRASES: dict[str, dict[str, dict[str, list[str] | str]]] = {
    "en": {
        "quadratic": {
            "topic": "Quadratic equations",
            "statement": [
                "Solve the equation [[eq]] over the real numbers.",
                "Find all real solutions of [[eq]].",
            ],
            "steps": [
                "First compute the discriminant [[disc_def]]. Here [[disc_val]], which is positive, so there are two real roots.",
                "By the quadratic formula,",
                "@@formula",
                "so the solutions are",
                "@@roots",
                "As a check, Vieta's formulas give [[check_sum]] and [[check_prod]], which matches the coefficients.",
            ],
            "alt": "You can also factor directly: [[factored]], which gives the same two roots without the formula.",
            "theory": [
                "An equation of the form [[general]] with [[a_ne_0]] is called quadratic. Its solutions are given by",
                "@@general_formula",
                "The expression under the root decides how many real solutions exist.",
            ],
        },
        "derivative": {
            "topic": "Derivatives of polynomials",
            "statement": [
                "Differentiate [[func]] and evaluate the derivative at [[point]].",
                "Compute the slope of the graph of [[func]] at [[point]].",
            ],
            "steps": [
                "We use the power rule [[rule]] term by term, since differentiation is linear.",
                "@@deriv",
                "Now substitute the point:",
                "@@value",
                "The constant term disappears because its derivative is zero.",
            ],
            "alt": "If you prefer, write the derivative as a limit of difference quotients; the power rule is just a shortcut for that computation.",
            "theory": [
                "For every natural number n the power rule holds:",
                "@@power_rule",
                "Together with linearity, [[linearity]], this lets us differentiate any polynomial.",
            ],
        },
        "integral": {
            "topic": "Definite integrals",
            "statement": [
                "Evaluate the integral [[integral]].",
                "Compute the area under the curve: [[integral]].",
            ],
            "steps": [
                "An antiderivative of the integrand is",
                "@@antideriv",
                "By the fundamental theorem of calculus we evaluate it at the limits:",
                "@@value",
                "Since the integrand is positive on the interval, the result is the area under the graph.",
            ],
            "alt": "A quick sanity check: the integrand is increasing, so the value must lie between the left and right rectangle estimates.",
            "theory": [
                "If [[primitive]] on an interval, the fundamental theorem of calculus says",
                "@@ftc",
                "So computing a definite integral reduces to finding an antiderivative.",
            ],
        },
        "series": {
            "topic": "Arithmetic series",
            "statement": [
                "Find the value of the sum [[sum]].",
                "Compute [[sum]] without adding the terms one by one.",
            ],
            "steps": [
                "Split the sum and use the formula for the first n natural numbers:",
                "@@split",
                "The second sum simply adds the same constant n times.",
                "Therefore [[result]].",
            ],
            "alt": "Gauss's pairing trick also works here: [[pairing]], and there are half as many pairs as terms.",
            "theory": [
                "The sum of the first n positive integers is",
                "@@gauss",
                "Any arithmetic series can be reduced to this formula by linearity.",
            ],
        },
        "linear_system": {
            "topic": "Systems of linear equations",
            "statement": [
                "Solve the system [[eq1]] and [[eq2]].",
                "Find x and y such that [[eq1]] and [[eq2]].",
            ],
            "steps": [
                "We use Cramer's rule. The determinant of the coefficient matrix is",
                "@@det",
                "Replacing the columns by the right-hand side gives [[dx]] and [[dy]].",
                "@@cramer",
                "Hence the unique solution is [[sol]].",
            ],
            "alt": "Elimination works just as well: multiply the first equation so that the coefficients of x agree, then subtract.",
            "theory": [
                "A system of two linear equations has exactly one solution when [[det_ne_0]]. In that case",
                "@@cramer",
                "where the numerators are determinants with one column replaced by the right-hand side.",
            ],
        },
        "dice": {
            "topic": "Classical probability",
            "statement": [
                "Two fair dice are rolled. Let X be the sum of the numbers shown. What is the probability of [[event]]?"
            ],
            "steps": [
                "All outcomes are equally likely and [[omega]].",
                "The favourable outcomes are [[favourable]], so [[count]].",
                "@@prob",
                "That is [[approx]].",
            ],
            "alt": "Drawing the 6 by 6 grid of outcomes and marking the diagonal with the right sum makes the count obvious.",
            "theory": [
                "If all outcomes of a finite experiment are equally likely, the probability of an event A is",
                "@@laplace",
                "This is Laplace's definition of probability.",
            ],
        },
        "frame": {
            "solution_title": [
                "Worked solution: {topic}",
                "{topic} – step-by-step solution",
                "Homework help: {topic}",
            ],
            "lecture_title": [
                "Lecture {n}: {topic}",
                "Calculus I, notes for week {n}: {topic}",
                "{topic} (lecture notes)",
            ],
            "qa_title": [
                "How do I solve this? ({topic})",
                "Stuck on an exercise about {topic}",
                "Where is my mistake? {topic}",
            ],
            "qa_intro": [
                "I am stuck on this exercise from my homework:",
                "Our teacher gave us this problem and I cannot get the answer in the book:",
            ],
            "qa_tried": [
                "I tried it twice and got a different number each time. What am I doing wrong?",
                "Any hint would be appreciated, I have an exam on Friday.",
            ],
            "step": "Step {n}",
            "solution": "Solution",
            "answer": "Answer",
            "definition": "Definition",
            "theorem": "Theorem",
            "example": "Example",
            "problem": "Problem",
            "accepted": "Accepted answer",
            "exercise": "Exercise",
            "remarks": [
                "A common mistake is to lose a minus sign when moving terms across the equals sign.",
                "Always check your result by substituting it back into the original problem.",
                "Writing every intermediate step makes it much easier to find errors later.",
                "Try the exercises at the end of the section before looking at the solutions.",
                "This method generalises, which is why it appears again in later chapters.",
                "If the numbers get ugly, double-check the arithmetic before questioning the method.",
            ],
        },
    },
    "de": {
        "quadratic": {
            "topic": "Quadratische Gleichungen",
            "statement": [
                "Löse die Gleichung [[eq]] über den reellen Zahlen.",
                "Bestimme alle reellen Lösungen von [[eq]].",
            ],
            "steps": [
                "Zuerst berechnen wir die Diskriminante [[disc_def]]. Hier ist [[disc_val]], also gibt es zwei reelle Lösungen.",
                "Mit der Mitternachtsformel folgt",
                "@@formula",
                "also",
                "@@roots",
                "Zur Kontrolle liefert der Satz von Vieta [[check_sum]] und [[check_prod]].",
            ],
            "alt": "Man kann auch direkt faktorisieren: [[factored]]. Das liefert dieselben Nullstellen.",
            "theory": [
                "Eine Gleichung der Form [[general]] mit [[a_ne_0]] heißt quadratisch. Ihre Lösungen sind",
                "@@general_formula",
                "Der Ausdruck unter der Wurzel entscheidet über die Anzahl der reellen Lösungen.",
            ],
        },
        "derivative": {
            "topic": "Ableitungen von Polynomen",
            "statement": [
                "Leite [[func]] ab und berechne die Ableitung an der Stelle [[point]].",
                "Bestimme die Steigung des Graphen von [[func]] bei [[point]].",
            ],
            "steps": [
                "Wir wenden die Potenzregel [[rule]] auf jeden Summanden an, denn die Ableitung ist linear.",
                "@@deriv",
                "Einsetzen ergibt",
                "@@value",
                "Der konstante Summand fällt weg, weil seine Ableitung null ist.",
            ],
            "alt": "Alternativ kann man den Differenzenquotienten aufstellen; die Potenzregel kürzt genau diese Rechnung ab.",
            "theory": [
                "Für jede natürliche Zahl n gilt die Potenzregel",
                "@@power_rule",
                "Zusammen mit der Linearität [[linearity]] lässt sich damit jedes Polynom ableiten.",
            ],
        },
        "integral": {
            "topic": "Bestimmte Integrale",
            "statement": ["Berechne das Integral [[integral]].", "Bestimme den Flächeninhalt [[integral]]."],
            "steps": [
                "Eine Stammfunktion des Integranden ist",
                "@@antideriv",
                "Nach dem Hauptsatz der Differential- und Integralrechnung gilt",
                "@@value",
                "Da der Integrand auf dem Intervall positiv ist, ist das genau die Fläche unter dem Graphen.",
            ],
            "alt": "Zur Plausibilität: Der Integrand wächst, also liegt der Wert zwischen Unter- und Obersumme.",
            "theory": [
                "Ist [[primitive]] auf einem Intervall, so gilt nach dem Hauptsatz",
                "@@ftc",
                "Ein bestimmtes Integral zu berechnen heißt also, eine Stammfunktion zu finden.",
            ],
        },
        "series": {
            "topic": "Arithmetische Reihen",
            "statement": [
                "Berechne die Summe [[sum]].",
                "Bestimme [[sum]], ohne alle Summanden einzeln zu addieren.",
            ],
            "steps": [
                "Wir zerlegen die Summe und benutzen die Formel für die ersten n natürlichen Zahlen:",
                "@@split",
                "Die zweite Summe addiert n-mal dieselbe Konstante.",
                "Also ist [[result]].",
            ],
            "alt": "Auch der Trick des kleinen Gauß funktioniert: [[pairing]], und es gibt halb so viele Paare wie Summanden.",
            "theory": [
                "Die Summe der ersten n natürlichen Zahlen ist",
                "@@gauss",
                "Jede arithmetische Reihe lässt sich wegen der Linearität darauf zurückführen.",
            ],
        },
        "linear_system": {
            "topic": "Lineare Gleichungssysteme",
            "statement": [
                "Löse das Gleichungssystem [[eq1]], [[eq2]].",
                "Bestimme x und y mit [[eq1]] und [[eq2]].",
            ],
            "steps": [
                "Wir verwenden die Cramersche Regel. Die Determinante der Koeffizientenmatrix ist",
                "@@det",
                "Ersetzt man die Spalten durch die rechte Seite, erhält man [[dx]] und [[dy]].",
                "@@cramer",
                "Die eindeutige Lösung ist also [[sol]].",
            ],
            "alt": "Das Additionsverfahren geht genauso: erste Gleichung passend multiplizieren und dann subtrahieren.",
            "theory": [
                "Ein System aus zwei linearen Gleichungen ist genau dann eindeutig lösbar, wenn [[det_ne_0]]. Dann gilt",
                "@@cramer",
                "wobei im Zähler jeweils eine Spalte durch die rechte Seite ersetzt wird.",
            ],
        },
        "dice": {
            "topic": "Laplace-Wahrscheinlichkeit",
            "statement": [
                "Es werden zwei faire Würfel geworfen, X sei die Augensumme. Wie groß ist die Wahrscheinlichkeit für [[event]]?"
            ],
            "steps": [
                "Alle Ergebnisse sind gleich wahrscheinlich und [[omega]].",
                "Günstig sind [[favourable]], also [[count]].",
                "@@prob",
                "Das sind [[approx]].",
            ],
            "alt": "Mit einer 6×6-Tabelle aller Ergebnisse sieht man die günstigen Fälle sofort auf einer Diagonale.",
            "theory": [
                "Sind alle Ergebnisse eines endlichen Zufallsexperiments gleich wahrscheinlich, so gilt für ein Ereignis A",
                "@@laplace",
                "Das ist die klassische Definition nach Laplace.",
            ],
        },
        "frame": {
            "solution_title": [
                "Musterlösung: {topic}",
                "{topic} – Schritt für Schritt",
                "Hausaufgabenhilfe: {topic}",
            ],
            "lecture_title": [
                "Vorlesung {n}: {topic}",
                "Analysis I, Skript Woche {n}: {topic}",
                "{topic} (Vorlesungsnotizen)",
            ],
            "qa_title": [
                "Wie löse ich das? ({topic})",
                "Komme bei einer Aufgabe zu {topic} nicht weiter",
                "Wo ist mein Fehler? {topic}",
            ],
            "qa_intro": [
                "Ich hänge bei dieser Hausaufgabe fest:",
                "Unser Lehrer hat uns diese Aufgabe gegeben und ich komme nicht auf das Ergebnis aus dem Buch:",
            ],
            "qa_tried": [
                "Ich habe es zweimal gerechnet und jedes Mal etwas anderes herausbekommen. Was mache ich falsch?",
                "Für jeden Tipp dankbar, ich schreibe am Freitag eine Klausur.",
            ],
            "step": "Schritt {n}",
            "solution": "Lösung",
            "answer": "Antwort",
            "definition": "Definition",
            "theorem": "Satz",
            "example": "Beispiel",
            "problem": "Aufgabe",
            "accepted": "Akzeptierte Antwort",
            "exercise": "Übung",
            "remarks": [
                "Ein häufiger Fehler ist ein verlorenes Minuszeichen beim Umformen.",
                "Prüfe dein Ergebnis immer durch Einsetzen in die ursprüngliche Aufgabe.",
                "Wer jeden Zwischenschritt aufschreibt, findet Fehler später viel schneller.",
                "Versuche die Übungen am Ende des Abschnitts, bevor du die Lösungen liest.",
                "Das Verfahren lässt sich verallgemeinern und taucht in späteren Kapiteln wieder auf.",
            ],
        },
    },
    "fr": {
        "quadratic": {
            "topic": "Équations du second degré",
            "statement": [
                "Résoudre dans les réels l'équation [[eq]].",
                "Trouver toutes les solutions réelles de [[eq]].",
            ],
            "steps": [
                "On calcule d'abord le discriminant [[disc_def]]. Ici [[disc_val]], il est positif donc il y a deux racines réelles.",
                "D'après la formule du cours,",
                "@@formula",
                "donc",
                "@@roots",
                "Vérification avec les relations de Viète : [[check_sum]] et [[check_prod]].",
            ],
            "alt": "On peut aussi factoriser directement : [[factored]], ce qui donne les mêmes racines.",
            "theory": [
                "Une équation de la forme [[general]] avec [[a_ne_0]] est dite du second degré. Ses solutions sont",
                "@@general_formula",
                "Le signe du discriminant détermine le nombre de solutions réelles.",
            ],
        },
        "derivative": {
            "topic": "Dérivées des polynômes",
            "statement": [
                "Dériver [[func]] puis calculer la dérivée en [[point]].",
                "Déterminer la pente de la tangente à la courbe de [[func]] en [[point]].",
            ],
            "steps": [
                "On applique la règle [[rule]] à chaque terme, la dérivation étant linéaire.",
                "@@deriv",
                "En remplaçant, on obtient",
                "@@value",
                "La constante disparaît car sa dérivée est nulle.",
            ],
            "alt": "On peut aussi revenir au taux d'accroissement ; la règle des puissances n'est qu'un raccourci de ce calcul.",
            "theory": [
                "Pour tout entier naturel n, on a",
                "@@power_rule",
                "Avec la linéarité, [[linearity]], on peut dériver n'importe quel polynôme.",
            ],
        },
        "integral": {
            "topic": "Intégrales définies",
            "statement": [
                "Calculer l'intégrale [[integral]].",
                "Déterminer l'aire sous la courbe : [[integral]].",
            ],
            "steps": [
                "Une primitive de la fonction intégrée est",
                "@@antideriv",
                "D'après le théorème fondamental de l'analyse,",
                "@@value",
                "La fonction étant positive sur l'intervalle, c'est l'aire sous la courbe.",
            ],
            "alt": "Contrôle rapide : la fonction est croissante, la valeur est donc comprise entre les sommes de Riemann à gauche et à droite.",
            "theory": [
                "Si [[primitive]] sur un intervalle, le théorème fondamental donne",
                "@@ftc",
                "Calculer une intégrale revient donc à trouver une primitive.",
            ],
        },
        "series": {
            "topic": "Suites arithmétiques",
            "statement": [
                "Calculer la somme [[sum]].",
                "Déterminer [[sum]] sans additionner les termes un à un.",
            ],
            "steps": [
                "On sépare la somme et on utilise la formule des n premiers entiers :",
                "@@split",
                "La seconde somme ajoute n fois la même constante.",
                "Finalement [[result]].",
            ],
            "alt": "L'astuce de Gauss marche aussi : [[pairing]], avec deux fois moins de paires que de termes.",
            "theory": [
                "La somme des n premiers entiers vaut",
                "@@gauss",
                "Toute somme arithmétique s'y ramène par linéarité.",
            ],
        },
        "linear_system": {
            "topic": "Systèmes linéaires",
            "statement": [
                "Résoudre le système [[eq1]], [[eq2]].",
                "Trouver x et y tels que [[eq1]] et [[eq2]].",
            ],
            "steps": [
                "On utilise les formules de Cramer. Le déterminant du système vaut",
                "@@det",
                "En remplaçant les colonnes par le second membre : [[dx]] et [[dy]].",
                "@@cramer",
                "L'unique solution est donc [[sol]].",
            ],
            "alt": "La méthode par combinaison fonctionne aussi : on multiplie la première équation puis on soustrait.",
            "theory": [
                "Un système de deux équations linéaires admet une unique solution si et seulement si [[det_ne_0]]. Alors",
                "@@cramer",
                "où chaque numérateur est un déterminant dont une colonne est remplacée par le second membre.",
            ],
        },
        "dice": {
            "topic": "Probabilités uniformes",
            "statement": [
                "On lance deux dés équilibrés et on note X la somme obtenue. Quelle est la probabilité de [[event]] ?"
            ],
            "steps": [
                "Toutes les issues sont équiprobables et [[omega]].",
                "Les issues favorables sont [[favourable]], donc [[count]].",
                "@@prob",
                "Soit [[approx]].",
            ],
            "alt": "Un tableau à double entrée de 6 lignes et 6 colonnes rend le comptage immédiat.",
            "theory": [
                "En situation d'équiprobabilité, la probabilité d'un événement A est",
                "@@laplace",
                "C'est la définition classique de Laplace.",
            ],
        },
        "frame": {
            "solution_title": [
                "Corrigé : {topic}",
                "{topic} – correction détaillée",
                "Aide aux devoirs : {topic}",
            ],
            "lecture_title": [
                "Cours {n} : {topic}",
                "Analyse 1, notes de la semaine {n} : {topic}",
                "{topic} (notes de cours)",
            ],
            "qa_title": [
                "Comment résoudre cet exercice ? ({topic})",
                "Bloqué sur un exercice de {topic}",
                "Où est mon erreur ? {topic}",
            ],
            "qa_intro": [
                "Je bloque sur cet exercice de mon devoir maison :",
                "Notre professeur nous a donné ce problème et je ne trouve pas le résultat du livre :",
            ],
            "qa_tried": [
                "J'ai refait le calcul deux fois et je trouve un résultat différent à chaque fois. Qu'est-ce qui ne va pas ?",
                "Merci d'avance pour vos indices, j'ai un contrôle vendredi.",
            ],
            "step": "Étape {n}",
            "solution": "Solution",
            "answer": "Réponse",
            "definition": "Définition",
            "theorem": "Théorème",
            "example": "Exemple",
            "problem": "Exercice",
            "accepted": "Réponse acceptée",
            "exercise": "Exercice",
            "remarks": [
                "Une erreur fréquente consiste à oublier un signe moins en changeant de membre.",
                "Vérifiez toujours le résultat en le remplaçant dans l'énoncé.",
                "Écrire chaque étape intermédiaire permet de retrouver les erreurs bien plus vite.",
                "Essayez les exercices de fin de chapitre avant de lire les corrigés.",
                "Cette méthode se généralise, c'est pourquoi on la retrouve plus loin dans le cours.",
            ],
        },
    },
    "es": {
        "quadratic": {
            "topic": "Ecuaciones de segundo grado",
            "statement": [
                "Resuelve la ecuación [[eq]] en los números reales.",
                "Halla todas las soluciones reales de [[eq]].",
            ],
            "steps": [
                "Primero calculamos el discriminante [[disc_def]]. Aquí [[disc_val]], que es positivo, así que hay dos raíces reales.",
                "Aplicando la fórmula general,",
                "@@formula",
                "de modo que",
                "@@roots",
                "Comprobación con las fórmulas de Vieta: [[check_sum]] y [[check_prod]].",
            ],
            "alt": "También se puede factorizar directamente: [[factored]], que da las mismas raíces.",
            "theory": [
                "Una ecuación de la forma [[general]] con [[a_ne_0]] se llama de segundo grado. Sus soluciones son",
                "@@general_formula",
                "El signo del discriminante indica cuántas soluciones reales hay.",
            ],
        },
        "derivative": {
            "topic": "Derivadas de polinomios",
            "statement": [
                "Deriva [[func]] y evalúa la derivada en [[point]].",
                "Calcula la pendiente de la gráfica de [[func]] en [[point]].",
            ],
            "steps": [
                "Aplicamos la regla de la potencia [[rule]] a cada término, ya que la derivada es lineal.",
                "@@deriv",
                "Sustituyendo el punto:",
                "@@value",
                "El término constante desaparece porque su derivada es cero.",
            ],
            "alt": "También puedes plantear el cociente incremental; la regla de la potencia solo abrevia ese cálculo.",
            "theory": [
                "Para todo número natural n se cumple",
                "@@power_rule",
                "Junto con la linealidad, [[linearity]], esto permite derivar cualquier polinomio.",
            ],
        },
        "integral": {
            "topic": "Integrales definidas",
            "statement": ["Calcula la integral [[integral]].", "Halla el área bajo la curva: [[integral]]."],
            "steps": [
                "Una primitiva del integrando es",
                "@@antideriv",
                "Por el teorema fundamental del cálculo,",
                "@@value",
                "Como el integrando es positivo en el intervalo, el resultado es el área bajo la gráfica.",
            ],
            "alt": "Comprobación rápida: el integrando es creciente, así que el valor está entre las sumas de Riemann por la izquierda y por la derecha.",
            "theory": [
                "Si [[primitive]] en un intervalo, el teorema fundamental afirma que",
                "@@ftc",
                "Calcular una integral definida se reduce a encontrar una primitiva.",
            ],
        },
        "series": {
            "topic": "Progresiones aritméticas",
            "statement": ["Calcula la suma [[sum]].", "Halla [[sum]] sin sumar los términos uno a uno."],
            "steps": [
                "Separamos la suma y usamos la fórmula de los n primeros naturales:",
                "@@split",
                "La segunda suma añade n veces la misma constante.",
                "Por tanto [[result]].",
            ],
            "alt": "El truco de Gauss también sirve: [[pairing]], y hay la mitad de parejas que de términos.",
            "theory": [
                "La suma de los n primeros números naturales es",
                "@@gauss",
                "Cualquier progresión aritmética se reduce a esta fórmula por linealidad.",
            ],
        },
        "linear_system": {
            "topic": "Sistemas de ecuaciones lineales",
            "statement": [
                "Resuelve el sistema [[eq1]], [[eq2]].",
                "Encuentra x e y tales que [[eq1]] y [[eq2]].",
            ],
            "steps": [
                "Usamos la regla de Cramer. El determinante de la matriz de coeficientes es",
                "@@det",
                "Sustituyendo las columnas por los términos independientes: [[dx]] y [[dy]].",
                "@@cramer",
                "La solución única es [[sol]].",
            ],
            "alt": "Por reducción también sale: multiplica la primera ecuación y réstala de la segunda.",
            "theory": [
                "Un sistema de dos ecuaciones lineales tiene solución única si y solo si [[det_ne_0]]. Entonces",
                "@@cramer",
                "donde en cada numerador una columna se sustituye por los términos independientes.",
            ],
        },
        "dice": {
            "topic": "Regla de Laplace",
            "statement": [
                "Se lanzan dos dados equilibrados y X es la suma de los puntos. ¿Cuál es la probabilidad de [[event]]?"
            ],
            "steps": [
                "Todos los resultados son equiprobables y [[omega]].",
                "Los casos favorables son [[favourable]], luego [[count]].",
                "@@prob",
                "Es decir, [[approx]].",
            ],
            "alt": "Con una tabla de 6 por 6 de todos los resultados los casos favorables se ven en una diagonal.",
            "theory": [
                "Si todos los resultados de un experimento finito son equiprobables, la probabilidad de un suceso A es",
                "@@laplace",
                "Es la regla de Laplace: casos favorables entre casos posibles.",
            ],
        },
        "frame": {
            "solution_title": [
                "Solución paso a paso: {topic}",
                "{topic}: ejercicio resuelto",
                "Ayuda con los deberes: {topic}",
            ],
            "lecture_title": [
                "Tema {n}: {topic}",
                "Cálculo I, apuntes de la semana {n}: {topic}",
                "{topic} (apuntes de clase)",
            ],
            "qa_title": [
                "¿Cómo se resuelve esto? ({topic})",
                "Atascado con un ejercicio de {topic}",
                "¿Dónde está mi error? {topic}",
            ],
            "qa_intro": [
                "Estoy atascado con este ejercicio de los deberes:",
                "El profesor nos puso este problema y no me sale el resultado del libro:",
            ],
            "qa_tried": [
                "Lo he hecho dos veces y me sale distinto cada vez. ¿Qué estoy haciendo mal?",
                "Se agradece cualquier pista, tengo examen el viernes.",
            ],
            "step": "Paso {n}",
            "solution": "Solución",
            "answer": "Respuesta",
            "definition": "Definición",
            "theorem": "Teorema",
            "example": "Ejemplo",
            "problem": "Ejercicio",
            "accepted": "Respuesta aceptada",
            "exercise": "Ejercicio",
            "remarks": [
                "Un error típico es perder un signo menos al pasar términos al otro lado.",
                "Comprueba siempre el resultado sustituyéndolo en el enunciado.",
                "Escribir cada paso intermedio ayuda mucho a encontrar los errores.",
                "Intenta los ejercicios del final del tema antes de mirar las soluciones.",
                "Este método se generaliza y volverá a aparecer en temas posteriores.",
            ],
        },
    },
    "ru": {
        "quadratic": {
            "topic": "Квадратные уравнения",
            "statement": [
                "Решите уравнение [[eq]] в действительных числах.",
                "Найдите все действительные корни уравнения [[eq]].",
            ],
            "steps": [
                "Сначала вычислим дискриминант [[disc_def]]. Здесь [[disc_val]], он положителен, значит, корней два.",
                "По формуле корней квадратного уравнения",
                "@@formula",
                "откуда",
                "@@roots",
                "Проверка по теореме Виета: [[check_sum]] и [[check_prod]].",
            ],
            "alt": "Можно и сразу разложить на множители: [[factored]], корни получатся те же.",
            "theory": [
                "Уравнение вида [[general]], где [[a_ne_0]], называется квадратным. Его корни находятся по формуле",
                "@@general_formula",
                "Знак дискриминанта определяет число действительных корней.",
            ],
        },
        "derivative": {
            "topic": "Производная многочлена",
            "statement": [
                "Найдите производную функции [[func]] и её значение в точке [[point]].",
                "Найдите угловой коэффициент касательной к графику [[func]] в точке [[point]].",
            ],
            "steps": [
                "Применим правило [[rule]] к каждому слагаемому: производная линейна.",
                "@@deriv",
                "Подставим точку:",
                "@@value",
                "Производная константы равна нулю, поэтому свободный член исчезает.",
            ],
            "alt": "Можно посчитать и через предел разностного отношения, правило степени лишь сокращает эту выкладку.",
            "theory": [
                "Для любого натурального n справедливо",
                "@@power_rule",
                "Вместе с линейностью, [[linearity]], это позволяет дифференцировать любой многочлен.",
            ],
        },
        "integral": {
            "topic": "Определённый интеграл",
            "statement": ["Вычислите интеграл [[integral]].", "Найдите площадь под графиком: [[integral]]."],
            "steps": [
                "Первообразная подынтегральной функции:",
                "@@antideriv",
                "По формуле Ньютона — Лейбница",
                "@@value",
                "Функция на отрезке положительна, поэтому это и есть площадь под графиком.",
            ],
            "alt": "Проверка на глаз: функция возрастает, значит, ответ лежит между левой и правой суммами Римана.",
            "theory": [
                "Если [[primitive]] на отрезке, то по формуле Ньютона — Лейбница",
                "@@ftc",
                "Таким образом, вычисление интеграла сводится к поиску первообразной.",
            ],
        },
        "series": {
            "topic": "Арифметическая прогрессия",
            "statement": ["Найдите сумму [[sum]].", "Вычислите [[sum]], не складывая слагаемые по одному."],
            "steps": [
                "Разобьём сумму на две и воспользуемся формулой суммы первых n натуральных чисел:",
                "@@split",
                "Вторая сумма — это n раз одна и та же константа.",
                "Итак, [[result]].",
            ],
            "alt": "Работает и приём Гаусса: [[pairing]], а пар вдвое меньше, чем слагаемых.",
            "theory": [
                "Сумма первых n натуральных чисел равна",
                "@@gauss",
                "Любая арифметическая прогрессия сводится к этой формуле.",
            ],
        },
        "linear_system": {
            "topic": "Системы линейных уравнений",
            "statement": [
                "Решите систему [[eq1]], [[eq2]].",
                "Найдите x и y, для которых [[eq1]] и [[eq2]].",
            ],
            "steps": [
                "Воспользуемся формулами Крамера. Определитель матрицы коэффициентов равен",
                "@@det",
                "Заменяя столбцы столбцом свободных членов, получаем [[dx]] и [[dy]].",
                "@@cramer",
                "Единственное решение: [[sol]].",
            ],
            "alt": "Методом сложения тоже получится: домножьте первое уравнение и вычтите из второго.",
            "theory": [
                "Система двух линейных уравнений имеет единственное решение тогда и только тогда, когда [[det_ne_0]]. Тогда",
                "@@cramer",
                "где в числителях один столбец заменён столбцом свободных членов.",
            ],
        },
        "dice": {
            "topic": "Классическая вероятность",
            "statement": [
                "Бросают две правильные игральные кости, X — сумма выпавших очков. Найдите вероятность события [[event]]."
            ],
            "steps": [
                "Все исходы равновозможны, [[omega]].",
                "Благоприятные исходы: [[favourable]], то есть [[count]].",
                "@@prob",
                "Это примерно [[approx]].",
            ],
            "alt": "Если нарисовать таблицу 6 на 6, благоприятные исходы окажутся на одной диагонали.",
            "theory": [
                "Если все исходы конечного опыта равновозможны, вероятность события A равна",
                "@@laplace",
                "Это классическое определение вероятности.",
            ],
        },
        "frame": {
            "solution_title": [
                "Подробное решение: {topic}",
                "{topic}: решение по шагам",
                "Помощь с домашним заданием: {topic}",
            ],
            "lecture_title": [
                "Лекция {n}. {topic}",
                "Матанализ, конспект недели {n}: {topic}",
                "{topic} (конспект лекции)",
            ],
            "qa_title": [
                "Как решить? ({topic})",
                "Не получается задача на тему «{topic}»",
                "Где ошибка? {topic}",
            ],
            "qa_intro": [
                "Не могу решить задачу из домашнего задания:",
                "Учитель дал задачу, а у меня не сходится с ответом в учебнике:",
            ],
            "qa_tried": [
                "Решал два раза, и каждый раз получается разное. Что я делаю не так?",
                "Буду благодарен за любую подсказку, в пятницу контрольная.",
            ],
            "step": "Шаг {n}",
            "solution": "Решение",
            "answer": "Ответ",
            "definition": "Определение",
            "theorem": "Теорема",
            "example": "Пример",
            "problem": "Задача",
            "accepted": "Принятый ответ",
            "exercise": "Упражнение",
            "remarks": [
                "Частая ошибка — потерять минус при переносе слагаемых через знак равенства.",
                "Всегда проверяйте ответ подстановкой в исходное условие.",
                "Если записывать все промежуточные шаги, ошибку потом найти гораздо проще.",
                "Попробуйте решить упражнения в конце параграфа, прежде чем смотреть ответы.",
                "Этот приём обобщается, поэтому он ещё встретится в следующих главах.",
            ],
        },
    },
    "zh": {
        "quadratic": {
            "topic": "一元二次方程",
            "statement": ["在实数范围内解方程 [[eq]]。", "求方程 [[eq]] 的所有实数根。"],
            "steps": [
                "先计算判别式 [[disc_def]]。这里 [[disc_val]]，大于零，所以方程有两个不相等的实数根。",
                "由求根公式得",
                "@@formula",
                "所以",
                "@@roots",
                "用韦达定理检验：[[check_sum]]，[[check_prod]]，与系数一致。",
            ],
            "alt": "也可以直接因式分解：[[factored]]，得到同样的两个根。",
            "theory": [
                "形如 [[general]]（[[a_ne_0]]）的方程叫做一元二次方程，它的根为",
                "@@general_formula",
                "根号下的判别式决定了实数根的个数。",
            ],
        },
        "derivative": {
            "topic": "多项式函数的导数",
            "statement": [
                "求函数 [[func]] 的导数，并求它在 [[point]] 处的值。",
                "求曲线 [[func]] 在 [[point]] 处切线的斜率。",
            ],
            "steps": [
                "求导是线性运算，对每一项用幂函数求导公式 [[rule]]。",
                "@@deriv",
                "代入得",
                "@@value",
                "常数项的导数为零，所以消失了。",
            ],
            "alt": "也可以用导数的定义求差商的极限，幂函数公式只是把这个计算简化了。",
            "theory": [
                "对任意正整数 n，有",
                "@@power_rule",
                "再结合线性性质 [[linearity]]，就可以对任何多项式求导。",
            ],
        },
        "integral": {
            "topic": "定积分的计算",
            "statement": ["计算定积分 [[integral]]。", "求曲线下方的面积：[[integral]]。"],
            "steps": [
                "被积函数的一个原函数是",
                "@@antideriv",
                "由牛顿—莱布尼茨公式，",
                "@@value",
                "被积函数在区间上为正，所以结果就是曲线下方的面积。",
            ],
            "alt": "简单验算：被积函数单调递增，所以结果应介于左、右黎曼和之间。",
            "theory": [
                "若在区间上 [[primitive]]，则由微积分基本定理",
                "@@ftc",
                "因此计算定积分就归结为求原函数。",
            ],
        },
        "series": {
            "topic": "等差数列求和",
            "statement": ["求和 [[sum]]。", "不逐项相加，计算 [[sum]]。"],
            "steps": [
                "把和式拆开，并利用前 n 个正整数的求和公式：",
                "@@split",
                "第二个和式就是同一个常数加 n 次。",
                "所以 [[result]]。",
            ],
            "alt": "高斯的首尾配对法同样适用：[[pairing]]，配对的个数是项数的一半。",
            "theory": [
                "前 n 个正整数的和为",
                "@@gauss",
                "任何等差数列的和都可以由线性性质化为这个公式。",
            ],
        },
        "linear_system": {
            "topic": "二元一次方程组",
            "statement": ["解方程组 [[eq1]]，[[eq2]]。", "求满足 [[eq1]] 和 [[eq2]] 的 x 和 y。"],
            "steps": [
                "用克莱姆法则。系数行列式为",
                "@@det",
                "把相应的列换成常数项，得 [[dx]]，[[dy]]。",
                "@@cramer",
                "所以方程组的唯一解是 [[sol]]。",
            ],
            "alt": "用加减消元法也可以：把第一个方程乘以适当的数，再与第二个方程相减。",
            "theory": [
                "两个方程的线性方程组有唯一解当且仅当 [[det_ne_0]]，此时",
                "@@cramer",
                "其中分子是把一列换成常数项后的行列式。",
            ],
        },
        "dice": {
            "topic": "古典概型",
            "statement": ["同时掷两枚均匀的骰子，记 X 为点数之和，求 [[event]] 的概率。"],
            "steps": [
                "所有结果等可能，[[omega]]。",
                "有利的结果为 [[favourable]]，所以 [[count]]。",
                "@@prob",
                "约为 [[approx]]。",
            ],
            "alt": "画一个 6×6 的表格列出所有结果，有利结果正好在一条对角线上。",
            "theory": [
                "如果有限试验的所有结果等可能，那么事件 A 的概率为",
                "@@laplace",
                "这就是概率的古典定义。",
            ],
        },
        "frame": {
            "solution_title": ["详细解答：{topic}", "{topic}——分步解析", "作业帮助：{topic}"],
            "lecture_title": ["第{n}讲：{topic}", "高等数学第{n}周讲义：{topic}", "{topic}（课堂笔记）"],
            "qa_title": ["这道题怎么做？（{topic}）", "关于{topic}的一道题卡住了", "我哪里算错了？{topic}"],
            "qa_intro": ["作业里有一道题不会做：", "老师布置了这道题，我算出来的和书上的答案不一样："],
            "qa_tried": ["我算了两遍，每次结果都不一样，请问错在哪里？", "求大神指点，周五就要考试了。"],
            "step": "第{n}步",
            "solution": "解",
            "answer": "答案",
            "definition": "定义",
            "theorem": "定理",
            "example": "例",
            "problem": "题目",
            "accepted": "最佳答案",
            "exercise": "练习",
            "remarks": [
                "常见的错误是移项时忘记变号。",
                "算完后一定要把结果代回原题检验。",
                "把每一步都写出来，出错时更容易找到原因。",
                "先做完本节末尾的练习，再去看答案。",
                "这个方法可以推广，后面的章节还会用到。",
            ],
        },
    },
}

MATH_LANGS = tuple(PHRASES)
