package vschemaapi

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/topod-io/topod/pkg/vschemastore"
)

// fill sets every exported field of the value v points to, recursively, to
// something other than its zero value (a slice gets one element), so that
// a field the conversion to package wire forgets shows in the JSON.
func fill(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.Type().Elem().PkgPath() != "" && v.Type().Elem().PkgPath() != "github.com/topod-io/topod/pkg/vschemastore" {
			return // another package's message (the old vschema, not sent)
		}
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem())
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i))
			}
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 { // json.RawMessage
			v.SetBytes([]byte(`"x"`))
			return
		}
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(v.Index(0))
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64:
		v.SetInt(1)
	}
}

// TestWireMatchesStore: the API's answers (package wire) carry every field
// of the store's results, with the same JSON.
func TestWireMatchesStore(t *testing.T) {
	same := func(name string, store, wire any) {
		t.Helper()
		a, err := json.Marshal(store)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(wire)
		if err != nil {
			t.Fatal(err)
		}
		if string(a) != string(b) {
			t.Errorf("%s:\nstore %s\nwire  %s", name, a, b)
		}
	}
	var apply vschemastore.ApplyResult
	fill(reflect.ValueOf(&apply).Elem())
	same("ApplyResult", apply, applyResponse(&apply))
	var rules vschemastore.RulesResult
	fill(reflect.ValueOf(&rules).Elem())
	same("RulesResult", rules, rulesResponse(&rules))
	var w vschemastore.Write
	fill(reflect.ValueOf(&w).Elem())
	same("Write", []vschemastore.Write{w}, writesOf([]vschemastore.Write{w}))
	var cell vschemastore.CellResult
	fill(reflect.ValueOf(&cell).Elem())
	same("CellResult", cell, cellOf(cell))
	// Empty is not absent: "cells": [] says the topology has no cell.
	same("no cells", vschemastore.ApplyResult{Cells: []vschemastore.CellResult{}}, applyResponse(&vschemastore.ApplyResult{Cells: []vschemastore.CellResult{}}))
}
